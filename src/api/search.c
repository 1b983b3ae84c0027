/* search.c — GET /v1/search: full-text search over the caller's channels.
 *
 * Runs on a reader thread (readq.h): the token, the caller's channels (or
 * the one asked, membership checked), the index's candidates, and each
 * candidate's message as it is now, all from committed data. The index
 * may lag (it is written by the indexer thread, store/indexer.h) and may
 * be stale, so every candidate is re-read and re-matched with
 * model/search.h: a message deleted or edited since it was indexed is
 * never shown for words it no longer has, and a channel the caller has
 * left is not searched at all. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "api_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include "../model/search.h"
#include "../store/indexer.h"

typedef struct search_job {
    api_job a;
    char q[IY_SEARCH_MAX_BYTES + 1];
    size_t qlen;
    uint64_t channel;            /* 0: every channel of the caller */
    uint64_t before;             /* 0: no bound */
    int limit;
} search_job;

#define SEARCH_CANDIDATES 100

/* A candidate that still matches, with its rank. */
typedef struct found {
    iy_msg m;
    int64_t score;
    size_t order;                /* newest first */
} found;

static int by_rank(const void *pa, const void *pb)
{
    const found *a = pa, *b = pb;
    if (a->score != b->score) return a->score > b->score ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static void write_result(iy_buf *b, const iy_msg *m, const iy_snippet *sn)
{
    iy_buf_append_str(b, "{\"message\":");
    proto_write_message(b, m);
    iy_buf_putc(b, ',');
    jw_key(b, "snippet");
    jw_str(b, sn->text, sn->len);
    iy_buf_putc(b, ',');
    jw_key(b, "highlights");
    iy_buf_putc(b, '[');
    for (size_t i = 0; i < sn->nhl; i++) {
        if (i) iy_buf_putc(b, ',');
        iy_buf_putc(b, '[');
        jw_u64(b, sn->hl[i][0]);
        iy_buf_putc(b, ',');
        jw_u64(b, sn->hl[i][1]);
        iy_buf_putc(b, ']');
    }
    iy_buf_append_str(b, "]}");
}

static void search_read(store_reader *r, dbq_job *j)
{
    search_job *x = (search_job *)j;
    api_job *a = &x->a;
    uint64_t *chans = NULL, one;
    size_t nchans = 0, nhits = 0;
    store_hit *hits = NULL;
    iy_buf_reset(&a->body);
    int rc = store_reader_session(r, a->token, &a->user, a->device);
    if (rc == IY_ENOTFOUND) { api_fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
    if (rc) { api_fail(a, rc, "storage error"); return; }
    if (x->channel) {
        rc = store_reader_is_member(r, x->channel, a->user);
        if (rc == IY_ENOTFOUND) { api_fail(a, IY_ENOTFOUND, "no such channel"); return; }
        if (rc == IY_EFORBIDDEN) { api_fail(a, IY_EFORBIDDEN, "not a member of this channel"); return; }
        one = x->channel;
        chans = &one;
        nchans = 1;
    } else {
        rc = store_reader_user_channels(r, a->user, &chans, &nchans);
    }
    /* The newest SEARCH_CANDIDATES matches are ranked (model/search.h):
     * enough to rank well and to make up for stale candidates, few enough
     * that a common word costs a bounded read. Older ones: before=. */
    int want = x->limit + SEARCH_CANDIDATES;
    if (rc == 0) rc = store_reader_search(r, chans, nchans, x->q, x->qlen, x->before, want, &hits, &nhits);
    if (rc) {
        api_fail(a, rc, rc == IY_EUNAVAIL ? "search is unavailable" : "storage error");
        goto out;
    }
    found *f = iy_calloc(nhits ? nhits : 1, sizeof *f);
    size_t nf = 0;
    for (size_t i = 0; i < nhits; i++) {
        found *e = &f[nf];
        rc = store_reader_message(r, hits[i].channel, hits[i].seq, &e->m);
        if (rc == IY_ENOTFOUND) continue;
        if (rc) break;
        if (e->m.id == hits[i].id && e->m.event == IY_EV_NONE && !e->m.deleted &&
            (e->score = iy_search_score(e->m.text, e->m.text_len, x->q, x->qlen)) > 0) {
            e->order = i;
            nf++;
        } else {
            iy_msg_clear(&e->m);
        }
    }
    if (rc && rc != IY_ENOTFOUND) {
        api_fail(a, rc, "storage error");
    } else {
        qsort(f, nf, sizeof *f, by_rank);
        iy_snippet *sn = iy_malloc(sizeof *sn);
        iy_buf_append_str(&a->body, "{\"results\":[");
        for (size_t i = 0; i < nf && i < (size_t)x->limit; i++) {
            iy_search_snippet(f[i].m.text, f[i].m.text_len, x->q, x->qlen, sn);
            if (i) iy_buf_putc(&a->body, ',');
            write_result(&a->body, &f[i].m, sn);
        }
        iy_buf_append_str(&a->body, "]}");
        iy_free(sn);
    }
    for (size_t i = 0; i < nf; i++) iy_msg_clear(&f[i].m);
    iy_free(f);
out:
    if (chans != &one) iy_free(chans);
    iy_free(hits);
}

void search_request(conn *c, const http_request *req)
{
    /* No token at all is 401 whatever the query (a bad one is found on the reader). */
    if (req->authorization.len <= 7 || strncasecmp(req->authorization.ptr, "Bearer ", 7) != 0) {
        conn_http_error(c, IY_EUNAUTH, "a bearer token is needed");
        return;
    }
    uint64_t limit = IY_SEARCH_LIMIT_DEFAULT;
    int has_l = 0;
    if (api_query_num(c, req, "limit", 1, IY_SEARCH_LIMIT_MAX, &limit, &has_l)) return;
    search_job *x = api_job_new(c, req, sizeof *x, NULL, 1, NULL);
    x->a.j.read = search_read;
    x->limit = (int)limit;
    int rc = http_query_get(req->query, "q", x->q, sizeof x->q);
    if (rc != 1 || iy_search_query_check(x->q, strlen(x->q))) {
        conn_http_error(c, IY_EINVAL, "q must be 2 to 100 characters of text");
        api_job_drop(&x->a);
        return;
    }
    x->qlen = strlen(x->q);
    const char *names[2] = { "channel", "before" };
    uint64_t *vals[2] = { &x->channel, &x->before };
    for (int i = 0; i < 2; i++) {
        char v[32];
        rc = http_query_get(req->query, names[i], v, sizeof v);
        if (rc == 0) continue;
        if (rc != 1 || proto_parse_id(v, strlen(v), vals[i])) {
            conn_http_error(c, IY_EINVAL, i ? "before must be a message id" : "channel must be a channel id");
            api_job_drop(&x->a);
            return;
        }
    }
    if (!svc_of(c)->indexer) {
        conn_http_error(c, IY_EUNAVAIL, "search is unavailable on this node (no search index)");
        api_job_drop(&x->a);
        return;
    }
    api_submit_read(c, &x->a);
}
