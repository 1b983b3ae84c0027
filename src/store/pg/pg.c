/* pg.c — the PostgreSQL backend of the storage seam (store.h): opening and
 * closing, the ops table, node numbers, settings. The rest of the backend
 * is split by concept (pg_int.h lists the files).
 *
 * Opening. The URI is checked by libpq's parser (a bad one: one log line,
 * IY_EIO), the storage thread's connection is made (unreachable: one log
 * line, IY_EUNAVAIL), the schema is created or upgraded (pg_schema.c), and
 * a node number is claimed.
 *
 * Node numbers. Ids mix in a 10-bit node number (model/types.h), so two
 * live nodes must never hold the same one. The `nodes` table leases them:
 * a node takes the row of its own name if there is one (a restart), else
 * the lowest free number, else the lowest whose lease expired, all under
 * an advisory lock so two starting nodes never pick the same row. The
 * lease (PGS_NODE_LEASE_S) is renewed by store_heartbeat; store_free ends
 * it. last_id, the newest id the number has made, survives in the row:
 * the generator resumes above it, so ids stay increasing across restarts
 * and across a number changing hands. Rounds and the writes that make ids
 * record it in the same transaction (pgs__add_last_id), heartbeats too.
 *
 * Writes outside rounds. A round keeps its transaction open on the storage
 * thread's connection from load to commit; a write made meanwhile would
 * commit or vanish with the round, so every such write first checks that
 * no round is open (pgs__no_round: a caller bug, store.h forbids it). */
#include "pg_int.h"
#include "../../base/alloc.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

int pgs__no_round(pgs_store *s, const char *what)
{
    if (!s->base.round) return 0;
    iy_log_error("store: %s called while a round is open (refused)", what);
    return IY_EINVAL;
}

/* ---- node numbers ------------------------------------------------------- */

static const char SQL_NODE_LOCK[] = "SELECT pg_advisory_xact_lock(452646151530)";
static const char SQL_NODE_CLAIM[] =
    "WITH mine AS (SELECT num FROM nodes WHERE name = $1::text),"
    " free AS (SELECT g.n AS num FROM generate_series(0, 1023) AS g(n)"
    "  LEFT JOIN nodes ON nodes.num = g.n"
    "  WHERE nodes.num IS NULL OR nodes.lease_until < now()"
    "  ORDER BY nodes.num IS NOT NULL, g.n LIMIT 1),"
    " pick AS (SELECT num FROM mine UNION ALL"
    "  SELECT num FROM free WHERE NOT EXISTS (SELECT 1 FROM mine) LIMIT 1)"
    " INSERT INTO nodes AS n (num, name, lease_until)"
    " SELECT num, $1::text, now() + make_interval(secs => $2::int4) FROM pick"
    " ON CONFLICT (num) DO UPDATE SET name = EXCLUDED.name, lease_until = EXCLUDED.lease_until"
    " RETURNING n.num, n.last_id";
static const char SQL_NODE_BEAT[] =
    "UPDATE nodes SET lease_until = now() + make_interval(secs => $3::int4),"
    " last_id = GREATEST(last_id, $4::int8) WHERE num = $1::int4 AND name = $2::text";
static const char SQL_NODE_RELEASE[] =
    "UPDATE nodes SET lease_until = now(), last_id = GREATEST(last_id, $3::int8)"
    " WHERE num = $1::int4 AND name = $2::text";
static const char SQL_NODE_LAST_ID[] =
    "UPDATE nodes SET last_id = $2::int8 WHERE num = $1::int4 AND last_id < $2::int8";

void pgs__add_last_id(pgs_pipe *p, pgs_store *s)
{
    pgs_params pp = { 0 };
    pgs__p_i32(&pp, (int32_t)s->base.ids.node);
    pgs__p_i64(&pp, s->base.ids.last);
    pgs__pipe_add(p, SQL_NODE_LAST_ID, &pp);
}

static int node_claim(pgs_store *s, int64_t deadline)
{
    pgs_pipe p;
    pgs_params pp = { 0 };
    pgs__p_str(&pp, s->node_name);
    pgs__p_i32(&pp, PGS_NODE_LEASE_S);
    pgs__pipe_begin(&p, &s->conn, deadline);
    pgs__pipe_add(&p, SQL_NODE_LOCK, NULL);
    int q = pgs__pipe_add(&p, SQL_NODE_CLAIM, &pp);
    int rc = pgs__pipe_run(&p);
    if (rc == 0 && pgs__pipe_rows(&p, q) != 1) {
        iy_log_error("store: no free node number for node %s (all 1024 are leased)", s->node_name);
        rc = IY_EIO;
    }
    if (rc == 0) {
        s->base.ids.node = (uint64_t)pgs__r_i32(pgs__pipe_res(&p, q), 0, 0) & IY_NODE_MAX;
        s->base.ids.last = pgs__r_i64(pgs__pipe_res(&p, q), 0, 1);
        atomic_store(&s->committed_id, s->base.ids.last);
        s->claimed = 1;
    }
    pgs__pipe_end(&p);
    return rc;
}

static int node_update(pgs_store *s, const char *sql, int64_t deadline, int beat)
{
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i32(&pp, (int32_t)s->base.ids.node);
    pgs__p_str(&pp, s->node_name);
    if (beat) pgs__p_i32(&pp, PGS_NODE_LEASE_S);
    pgs__p_i64(&pp, s->base.ids.last);
    int rc = pgs__exec(&s->conn, deadline, sql, &pp, &res);
    if (rc) return rc;
    int n = atoi(PQcmdTuples(res));
    PQclear(res);
    if (n == 0 && beat) {
        iy_log_error("store: node %s lost its node number %u to another node", s->node_name,
               (unsigned)s->base.ids.node);
        return IY_ECONFLICT;
    }
    return 0;
}

static int pg_heartbeat(store *st)
{
    pgs_store *s = (pgs_store *)st;
    int rc = pgs__no_round(s, "store_heartbeat");
    return rc ? rc : node_update(s, SQL_NODE_BEAT, pgs__deadline(), 1);
}

/* ---- open / free ------------------------------------------------------------ */

static const store_ops pgs_ops;

static void pg_free(store *st)
{
    pgs_store *s = (pgs_store *)st;
    if (!s) return;
    if (s->claimed) {
        pgs__rollback(&s->conn, pgs__now() + 1000);
        node_update(s, SQL_NODE_RELEASE, pgs__now() + 2000, 0);
    }
    pgs__conn_close(&s->conn);
    iy_free(s->uri);
    iy_free(s->node_name);
    iy_free(s);
}

int store_pg_open(const store_config *cfg, store **out)
{
    *out = NULL;
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->where, &err);
    if (!opts) {
        char line[256];
        snprintf(line, sizeof line, "%s", err ? err : "out of memory");
        line[strcspn(line, "\n")] = '\0';
        iy_log_error("store: bad PostgreSQL URL: %s", line);
        PQfreemem(err);
        return IY_EIO;
    }
    PQconninfoFree(opts);

    pgs_store *s = iy_calloc(1, sizeof *s);
    const char *node = cfg->node && cfg->node[0] ? cfg->node : "default";
    s->base.ops = &pgs_ops;
    s->uri = iy_strndup(cfg->where, strlen(cfg->where));
    s->node_name = iy_strndup(node, strlen(node));
    snprintf(s->appname, sizeof s->appname, "iyagi:%.57s", node);   /* server cap: 63 bytes */
    pgs__conn_init(&s->conn, s->uri, s->appname, "storage thread");

    int64_t deadline = pgs__deadline();   /* one for the whole open */
    int rc = pgs__conn_ensure(&s->conn, deadline);
    if (rc == 0) rc = pgs__schema_init(&s->conn, deadline);
    if (rc == 0) rc = node_claim(s, deadline);
    if (rc) {
        pg_free((store *)s);
        return rc == IY_EUNAVAIL ? IY_EUNAVAIL : IY_EIO;
    }
    *out = (store *)s;
    return 0;
}

/* ---- settings ------------------------------------------------------------------ */

static const char SQL_SETTING_GET[] = "SELECT value FROM settings WHERE name = $1::text";
static const char SQL_SETTING_PUT[] =
    "INSERT INTO settings (name, value) VALUES ($1::text, $2::bytea) ON CONFLICT (name) DO NOTHING";

/* The value of row 0 into a malloc'd, NUL-terminated copy. */
static void value_copy(const PGresult *r, char **v, size_t *vl)
{
    size_t n;
    const char *b = pgs__r_bytes(r, 0, 0, &n);
    *v = iy_strndup(b, n);
    *vl = n;
}

static int pg_setting_get(store *st, const char *name, char **v, size_t *vl)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params pp = { 0 };
    PGresult *res;
    *v = NULL;
    *vl = 0;
    pgs__p_str(&pp, name);
    int rc = pgs__exec_row(&s->conn, SQL_SETTING_GET, &pp, &res);
    if (rc) return rc;
    value_copy(res, v, vl);
    PQclear(res);
    return rc;
}

static int pg_setting_put_once(store *st, const char *name, const char *value, size_t len, char **v,
                               size_t *vl)
{
    pgs_store *s = (pgs_store *)st;
    pgs_params put = { 0 }, get = { 0 };
    pgs_pipe p;
    *v = NULL;
    *vl = 0;
    int rc = pgs__no_round(s, "store_setting_put_once");
    if (rc) return rc;
    pgs__p_str(&put, name);
    pgs__p_bytes(&put, value, len);
    pgs__p_str(&get, name);
    /* Insert unless set, then read what is there: one transaction, so a
     * concurrent first insert is waited for and read back. */
    pgs__pipe_begin(&p, &s->conn, pgs__deadline());
    pgs__pipe_add(&p, SQL_SETTING_PUT, &put);
    int q = pgs__pipe_add(&p, SQL_SETTING_GET, &get);
    rc = pgs__pipe_run(&p);
    if (rc == 0 && pgs__pipe_rows(&p, q) == 1) value_copy(pgs__pipe_res(&p, q), v, vl);
    else if (rc == 0) rc = IY_EIO;
    pgs__pipe_end(&p);
    return rc;
}

static const store_ops pgs_ops = {
    .kind = "postgresql",
    .free = pg_free,
    .heartbeat = pg_heartbeat,
    .setting_get = pg_setting_get,
    .setting_put_once = pg_setting_put_once,
    .user_create = pgs__user_create,
    .user_get = pgs__user_get,
    .user_find = pgs__user_find,
    .user_set_display_name = pgs__user_set_display_name,
    .user_set_password = pgs__user_set_password,
    .user_delete = pgs__user_delete,
    .session_list = pgs__session_list,
    .session_create = pgs__session_create,
    .session_get = pgs__session_get,
    .session_delete = pgs__session_delete,
    .channel_get = pgs__channel_get,
    .group_create = pgs__group_create,
    .user_channels = pgs__user_channels,
    .channel_last = pgs__channel_last,
    .share_channel = pgs__share_channel,
    .round_load = pgs__round_load,
    .round_commit = pgs__round_commit,
    .round_release = pgs__round_release,
    .user_pos = pgs__user_pos,
    .history = pgs__history,
    .sync = pgs__sync,
    .read_set = pgs__read_set,
    .read_get = pgs__read_get,
    .friend_state = pgs__friend_state,
    .friend_set = pgs__friend_set,
    .friend_list = pgs__friend_list,
    .block_set = pgs__block_set,
    .blocked = pgs__blocked,
    .block_list = pgs__block_list,
    .blocks_load = NULL,   /* the round's load reads them (pg_round.c, L5, L6) */
    .names_load = pgs__names_load,
    .target_locate = pgs__target_locate,
    .targets_load = pgs__targets_load,
    .mute_set = pgs__mute_set,
    .muted = pgs__muted,
    .last_active_set = pgs__last_active_set,
    .last_active_set_many = pgs__last_active_set_many,
    .friends_of = pgs__friends_of,
    .last_active_get = pgs__last_active_get,
    .push_sub_create = pgs__push_sub_create,
    .push_sub_delete = pgs__push_sub_delete,
    .push_sub_get = pgs__push_sub_get,
    .push_take = pgs__push_take,
    .push_done = pgs__push_done,
    .push_counts = pgs__push_counts,
    .reader_new = pgs__reader_new,
    .reader_free = pgs__reader_free,
    .reader_history = pgs__reader_history,
    .reader_sync = pgs__reader_sync,
    .reader_user_pos = pgs__reader_user_pos,
    .reader_session = pgs__reader_session,
    .reader_user_get = pgs__reader_user_get,
    .reader_is_member = pgs__reader_is_member,
    .reader_user_channels = pgs__reader_user_channels,
    .reader_search = pgs__reader_search,
    .indexer_new = pgs__indexer_new,
    .attachment_put = pgs__attachment_put,
    .attachments_load = pgs__attachments_load,
    .reader_attachment = pgs__reader_attachment,
};
