/* pg_wire.c — binary values to and from PostgreSQL (pg_int.h).
 *
 * Every statement of the backend takes binary parameters and returns binary
 * results: integers are big-endian, text and bytea are their bytes (no
 * escaping, so message text may hold U+0000 in a bytea), and arrays use the
 * binary array format:
 *
 *   int32 ndim (1, or 0 when empty), int32 flags (0: no NULLs), uint32
 *   element type OID, per dimension int32 size and int32 lower bound (1),
 *   then per element int32 length and its bytes.
 *
 * Multi-row writes pass one array per column to `unnest()`, so a round of
 * any size is one statement per table. Parameter values are borrowed:
 * libpq copies them into its output buffer when the statement is queued. */
#include "pg_int.h"
#include "../../base/err.h"
#include "../../base/log.h"
#include <string.h>

static void be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (char)(v & 0xff);
}

static void be32(char *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (char)(v & 0xff);
}

static uint64_t get_be(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | (unsigned char)p[i];
    return v;
}

/* ---- parameters ------------------------------------------------------------ */

/* The next parameter slot; an overflow is a bug in a statement of ours. */
static int slot(pgs_params *p)
{
    if (p->n >= PGS_PARAMS_MAX) {
        iy_log_error("store: postgresql: more than %d parameters", PGS_PARAMS_MAX);
        return PGS_PARAMS_MAX - 1;
    }
    return p->n++;
}

static void num(pgs_params *p, uint64_t v, int bytes)
{
    int i = slot(p);
    char tmp[8];
    be64(tmp, v);
    memcpy(p->num[i], tmp + 8 - bytes, (size_t)bytes);
    p->v[i] = p->num[i];
    p->len[i] = bytes;
    p->fmt[i] = 1;
}

void pgs__p_i64(pgs_params *p, uint64_t v) { num(p, v, 8); }
void pgs__p_i32(pgs_params *p, int32_t v) { num(p, (uint32_t)v, 4); }
void pgs__p_i16(pgs_params *p, int16_t v) { num(p, (uint16_t)v, 2); }
void pgs__p_bool(pgs_params *p, int v) { num(p, v ? 1 : 0, 1); }

void pgs__p_bytes(pgs_params *p, const void *b, size_t n)
{
    int i = slot(p);
    p->v[i] = n ? (const char *)b : "";
    p->len[i] = (int)n;
    p->fmt[i] = 1;
}

void pgs__p_str(pgs_params *p, const char *s) { pgs__p_bytes(p, s, strlen(s)); }

void pgs__p_buf(pgs_params *p, const iy_buf *b) { pgs__p_bytes(p, b->data, b->len); }

/* ---- arrays ------------------------------------------------------------------ */

#define ARR_HDR 20   /* ndim, flags, oid, size, lower bound */

void pgs__arr_begin(pgs_arr *a, uint32_t oid)
{
    iy_buf_reset(&a->b);
    iy_buf_reserve(&a->b, ARR_HDR);
    memset(a->b.data, 0, ARR_HDR);
    a->b.len = ARR_HDR;
    a->n = 0;
    a->oid = oid;
}

static void elem(pgs_arr *a, const void *v, size_t n)
{
    char len[4];
    be32(len, (uint32_t)n);
    iy_buf_append(&a->b, len, 4);
    if (n) iy_buf_append(&a->b, v, n);
    a->n++;
}

void pgs__arr_i64(pgs_arr *a, uint64_t v)
{
    char b[8];
    be64(b, v);
    elem(a, b, 8);
}

void pgs__arr_i16(pgs_arr *a, int16_t v)
{
    char b[8];
    be64(b, (uint16_t)v);
    elem(a, b + 6, 2);
}

void pgs__arr_bytes(pgs_arr *a, const void *b, size_t n) { elem(a, b, n); }

const iy_buf *pgs__arr_end(pgs_arr *a)
{
    if (a->n == 0) {
        /* The empty array: no dimensions. */
        be32(a->b.data, 0);
        be32(a->b.data + 4, 0);
        be32(a->b.data + 8, a->oid);
        a->b.len = 12;
        return &a->b;
    }
    be32(a->b.data, 1);
    be32(a->b.data + 4, 0);
    be32(a->b.data + 8, a->oid);
    be32(a->b.data + 12, a->n);
    be32(a->b.data + 16, 1);
    return &a->b;
}

void pgs__arr_free(pgs_arr *a)
{
    iy_buf_free(&a->b);
    a->n = 0;
}

/* ---- results ------------------------------------------------------------------- */

static uint64_t r_num(const PGresult *r, int row, int col, int bytes)
{
    if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != bytes) return 0;
    return get_be(PQgetvalue(r, row, col), bytes);
}

uint64_t pgs__r_i64(const PGresult *r, int row, int col) { return r_num(r, row, col, 8); }
int32_t pgs__r_i32(const PGresult *r, int row, int col) { return (int32_t)(uint32_t)r_num(r, row, col, 4); }
int16_t pgs__r_i16(const PGresult *r, int row, int col) { return (int16_t)(uint16_t)r_num(r, row, col, 2); }
int pgs__r_bool(const PGresult *r, int row, int col) { return r_num(r, row, col, 1) != 0; }
int pgs__r_null(const PGresult *r, int row, int col) { return PQgetisnull(r, row, col); }

const char *pgs__r_bytes(const PGresult *r, int row, int col, size_t *n)
{
    if (PQgetisnull(r, row, col)) {
        *n = 0;
        return "";
    }
    *n = (size_t)PQgetlength(r, row, col);
    return PQgetvalue(r, row, col);
}

int pgs__r_str(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    size_t n;
    const char *v = pgs__r_bytes(r, row, col, &n);
    if (n >= cap || memchr(v, '\0', n)) {
        dst[0] = '\0';
        iy_log_error("store: postgresql: a text value of %zu bytes where at most %zu fit", n, cap - 1);
        return IY_EIO;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

int pgs__r_arr_i64(const PGresult *r, int row, int col, uint64_t *out, uint32_t max, uint32_t *n)
{
    size_t len;
    const char *v = pgs__r_bytes(r, row, col, &len);
    *n = 0;
    if (len < 12) goto bad;
    uint32_t ndim = (uint32_t)get_be(v, 4);
    if (ndim == 0) return 0;
    if (ndim != 1 || len < ARR_HDR || get_be(v + 8, 4) != PGS_OID_INT8) goto bad;
    uint32_t cnt = (uint32_t)get_be(v + 12, 4);
    if (cnt > max || len != ARR_HDR + (size_t)cnt * 12) goto bad;
    for (uint32_t i = 0; i < cnt; i++) {
        const char *e = v + ARR_HDR + (size_t)i * 12;
        if (get_be(e, 4) != 8) goto bad;   /* a NULL element or a wrong size */
        out[i] = get_be(e + 4, 8);
    }
    *n = cnt;
    return 0;
bad:
    iy_log_error("store: postgresql: a malformed int8[] value");
    return IY_EIO;
}
