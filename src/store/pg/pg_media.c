/* pg_media.c — attachments' records on PostgreSQL (store.h, "attachments";
 * the table is schema version 6, pg_schema.c). The bytes are not here: they
 * are blobs in the blob directory, which a cluster shares (docs/DEPLOY.md). */
#include <string.h>
#include "pg_int.h"
#include "../../base/err.h"

static const char SQL_PUT[] =
    "INSERT INTO attachments (id, uploader, channel_id, message_id, size, created_ms, thumb, type, name)"
    " VALUES ($1::int8, $2::int8, $3::int8, $4::int8, $5::int8, $6::int8, $7::bool, $8::text, $9::text)"
    " ON CONFLICT (id) DO NOTHING";
static const char SQL_GET[] =
    "SELECT uploader, channel_id, message_id, size, created_ms, thumb, type, name FROM attachments"
    " WHERE id = $1::int8";

int pgs__attachment_put(store *st, const iy_attachment *a)
{
    pgs_store *s = (pgs_store *)st;
    if (pgs__no_round(s, "attachment_put")) return IY_EINVAL;
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, a->id);
    pgs__p_i64(&pp, a->uploader);
    pgs__p_i64(&pp, a->channel);
    pgs__p_i64(&pp, a->message);
    pgs__p_i64(&pp, a->size);
    pgs__p_i64(&pp, (uint64_t)a->created_ms);
    pgs__p_bool(&pp, a->thumb);
    pgs__p_str(&pp, a->type);
    pgs__p_str(&pp, a->name);
    int rc = pgs__exec(&s->conn, pgs__deadline(), SQL_PUT, &pp, &res);
    if (rc) return rc;
    rc = strcmp(PQcmdTuples(res), "1") == 0 ? 0 : IY_ECONFLICT;
    PQclear(res);
    return rc;
}

int pgs__q_attachment(pgs_conn *pc, uint64_t id, iy_attachment *out)
{
    pgs_params pp = { 0 };
    PGresult *res;
    pgs__p_i64(&pp, id);
    int rc = pgs__exec_row(pc, SQL_GET, &pp, &res);
    if (rc) return rc;
    memset(out, 0, sizeof *out);
    out->id = id;
    out->uploader = pgs__r_i64(res, 0, 0);
    out->channel = pgs__r_i64(res, 0, 1);
    out->message = pgs__r_i64(res, 0, 2);
    out->size = pgs__r_i64(res, 0, 3);
    out->created_ms = (int64_t)pgs__r_i64(res, 0, 4);
    out->thumb = pgs__r_bool(res, 0, 5);
    if (pgs__r_str(res, 0, 6, out->type, sizeof out->type) || pgs__r_str(res, 0, 7, out->name, sizeof out->name))
        rc = IY_EIO;
    PQclear(res);
    return rc;
}
