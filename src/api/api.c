/* api.c — the HTTP API's router and the plumbing its endpoints share
 * (api_int.h): jobs, body and query parsing, discovery, health, metrics. */
#include "api_int.h"
#include "routes.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/metrics.h"
#include "../base/utf8.h"
#include "../chat/auth.h"
#include "../chat/registry.h"
#include "../chat/tokens.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

/* ---- jobs ---- */

static void api_job_free(dbq_job *j)
{
    api_job *a = (api_job *)j;
    if (a->free_fn) a->free_fn(a);
    iy_free(j->text);
    iy_buf_free(&a->body);
    iy_free(a);
}

void api_fail_retry(api_job *a, int err, const char *message, int64_t retry_ms)
{
    if (err == IY_ERATE) metrics_add(M_RATE_LIMITED, 1);
    api_fail(a, err, message);
    a->retry_ms = retry_ms;
}

void api_fail(api_job *a, int err, const char *message)
{
    a->status = iy_err_http_status(err);
    iy_buf_reset(&a->body);
    proto_write_http_error(&a->body, iy_err_code(err), message);
}

void api_ok_user(api_job *a, int status, const iy_user *u)
{
    a->status = status;
    iy_buf_append_str(&a->body, "{\"user\":");
    proto_write_user(&a->body, u);
    iy_buf_putc(&a->body, '}');
}

/* Storage thread: authenticate, then the handler. */
static void api_run(store *s, dbq_job *j)
{
    api_job *a = (api_job *)j;
    iy_buf_reset(&a->body);
    a->status = 200;
    /* A cached token is trusted on a single node only: there a revocation
     * empties the cache before the logout is answered. In a cluster it
     * reaches the other nodes' caches a moment later (iyagi.revoke), and no
     * request may slip through that moment, so every node of a cluster asks
     * the store (a WebSocket's second read does so anyway: chat/chat.c). */
    if (a->need_auth && (a->svc->cluster || !tokens_get(a->svc->tokens, a->token, &a->user, a->device))) {
        /* The store says, and a valid token is cached (unless a revocation
         * came in meanwhile: the epoch) for the WebSocket auth. */
        uint64_t epoch = tokens_epoch(a->svc->tokens, a->token);
        int rc = store_session_get(s, a->token, &a->user, a->device);
        if (rc == IY_ENOTFOUND) { api_fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
        if (rc) { api_fail(a, rc, "storage unavailable, retry"); return; }
        tokens_put(a->svc->tokens, a->token, a->user, a->device, epoch);
    }
    if (a->handler) a->handler(s, a);
}

static void api_done(dbq_job *j)
{
    api_job *a = (api_job *)j;
    conn *c = iothread_conn(a->t, a->conn_id);
    if (c && !c->closing && a->then && a->status < 400) {
        /* The next stage takes over the job's reference. */
        api_then then = a->then;
        a->then = NULL;
        then(c, a);
        return;
    }
    if (c && !c->closing && a->need_auth && a->status == 401 && iy_log_allow(&iy_log_auth_budget)) {
        char peer[48];
        net_addr_text(c->client, peer, sizeof peer);
        iy_log_warn("http auth failed from %s on %s: invalid or revoked token", peer, metrics_route_name(c->http->route));
    }
    if (c && !c->closing) {
        char extra[40];
        snprintf(extra, sizeof extra, "Retry-After: %lld\r\n", (long long)((a->retry_ms + 999) / 1000));
        conn_http_respond_x(c, a->status, "application/json", a->retry_ms > 0 ? extra : NULL, a->body.data,
                            a->body.len);
    }
    api_job_drop(a);
}

void *api_job_new(conn *c, const http_request *req, size_t size, api_handler h, int need_auth,
                  void (*free_fn)(api_job *a))
{
    api_job *a = iy_calloc(1, size);
    dbq_job_init(&a->j, DBQ_RUN);
    a->j.run = api_run;
    a->j.done = api_done;
    a->j.free = api_job_free;
    a->free_fn = free_fn;
    a->j.origin = c->t;
    a->t = c->t;
    a->svc = svc_of(c);
    a->conn_id = c->id;
    a->handler = h;
    a->need_auth = need_auth;
    a->status = 200;
    if (need_auth && req) {
        iy_str v = req->authorization;
        if (v.len > 7 && strncasecmp(v.ptr, "Bearer ", 7) == 0)
            auth_token_hash(v.ptr + 7, v.len - 7, a->token);
        /* else: the hash of nothing matches no session: 401 */
    }
    return a;
}

void api_job_drop(api_job *a)
{
    dbq_job_unref(&a->j);
}

void api_submit(conn *c, api_job *a)
{
    c->http_busy = 1;
    conn_pause(c);
    dbq_job_init(&a->j, DBQ_RUN);
    if (dbq_submit(a->svc->dbq, &a->j) != 0) {
        conn_http_error(c, IY_EUNAVAIL, "server is shutting down");
        api_job_drop(a);
    }
}

/* HTTP is one request at a time per connection, so no key order matters;
 * the connection id spreads connections over the reader threads. */
void api_submit_read(conn *c, api_job *a)
{
    c->http_busy = 1;
    conn_pause(c);
    dbq_job_init(&a->j, DBQ_RUN);
    if (readq_submit(a->svc->readq, &a->j, c->id * 31 + c->t->index) != 0) {
        conn_http_error(c, IY_EUNAVAIL, "server is shutting down");
        api_job_drop(a);
    }
}

void api_ws_url(conn *c, const http_request *req, char *out, size_t n)
{
    const service *svc = svc_of(c);
    const char *pub = svc->cfg.public_url;
    if (pub[0]) {
        const char *rest = pub;
        const char *scheme = "ws://";
        if (strncmp(pub, "https://", 8) == 0) { scheme = "wss://"; rest = pub + 8; }
        else if (strncmp(pub, "http://", 7) == 0) rest = pub + 7;
        size_t len = strlen(rest);
        while (len && rest[len - 1] == '/') len--;
        snprintf(out, n, "%s%.*s/v1/ws", scheme, (int)len, rest);
    } else if (req && req->host.len && req->host.len < 256) {
        /* wss:// when this connection is TLS (--tls-cert) or came through a trusted TLS proxy */
        snprintf(out, n, "%s%.*s/v1/ws", c->tls || conn_forwarded_tls(c, req) ? "wss://" : "ws://",
                 (int)req->host.len, req->host.ptr);
    } else {
        char hp[300];
        net_url_host(svc->net.host, svc->net.port, hp, sizeof hp);
        snprintf(out, n, "%s%s/v1/ws", svc->net.tls ? "wss://" : "ws://", hp);
    }
}

void api_best_node(conn *c, const http_request *req, char *url, size_t n, char *node, size_t nn)
{
    service *svc = svc_of(c);
    bus_node_info best;
    if (svc->cluster && registry_best(svc->registry, &best) == 0) {
        snprintf(url, n, "%s", best.ws_url);
        snprintf(node, nn, "%s", best.name);
        return;
    }
    /* One node: this one, as the client reached it (or --public-url). */
    api_ws_url(c, req, url, n);
    snprintf(node, nn, "%s", svc->cfg.node_name);
}

void api_write_messages(iy_buf *b, const iy_msg_list *l)
{
    iy_buf_append_str(b, "\"messages\":[");
    for (size_t i = 0; i < l->n; i++) {
        if (i) iy_buf_putc(b, ',');
        proto_write_message(b, &l->v[i]);
    }
    iy_buf_putc(b, ']');
}

/* ---- body and query parsing ---- */

json_t *api_parse_body(conn *c, const http_request *req)
{
    json_error_t e;
    json_t *root = json_loadb(req->body ? req->body : "", req->body_len,
                              JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        conn_http_error(c, IY_EINVAL, "the body must be a JSON object");
        return NULL;
    }
    return root;
}

int api_get_str(conn *c, json_t *o, const char *key, char *out, size_t cap, int required)
{
    json_t *v = json_object_get(o, key);
    char m[96];
    if (!v || json_is_null(v)) {
        if (!required) return 0;
        snprintf(m, sizeof m, "%s is required", key);
        conn_http_error(c, IY_EINVAL, m);
        return IY_EINVAL;
    }
    if (!json_is_string(v)) {
        snprintf(m, sizeof m, "%s must be a string", key);
        conn_http_error(c, IY_EINVAL, m);
        return IY_EINVAL;
    }
    size_t n = json_string_length(v);
    if (n >= cap) {
        snprintf(m, sizeof m, "%s is too long (at most %zu bytes)", key, cap - 1);
        conn_http_error(c, IY_ETOOBIG, m);
        return IY_ETOOBIG;
    }
    if (memchr(json_string_value(v), '\0', n)) {
        conn_http_error(c, IY_EINVAL, "strings may not contain NUL");
        return IY_EINVAL;
    }
    memcpy(out, json_string_value(v), n + 1);
    return 1;
}

int api_valid_username(const char *u)
{
    size_t n = strlen(u);
    if (n < IY_USERNAME_MIN || n > IY_USERNAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = u[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

int api_check_display_name(conn *c, const char *s)
{
    if (iy_utf8_count(s, strlen(s)) > IY_DISPLAY_MAX_CP) {
        conn_http_error(c, IY_ETOOBIG, "display_name is at most 64 characters");
        return IY_ETOOBIG;
    }
    return 0;
}

int api_query_num(conn *c, const http_request *req, const char *name, uint64_t lo, uint64_t hi,
                  uint64_t *out, int *present)
{
    char v[32];
    int rc = http_query_get(req->query, name, v, sizeof v);
    *present = rc == 1;
    if (rc == 0) return 0;
    char *end = NULL;
    unsigned long long x = 0;
    errno = 0;
    if (rc == 1 && v[0] >= '0' && v[0] <= '9') x = strtoull(v, &end, 10);
    if (rc != 1 || !end || *end || errno == ERANGE || x < lo || x > hi) {
        char m[128];
        snprintf(m, sizeof m, "%s must be an integer from %llu to %llu", name, (unsigned long long)lo,
                 (unsigned long long)hi);
        conn_http_error(c, IY_EINVAL, m);
        return IY_EINVAL;
    }
    *out = x;
    return 0;
}

/* ---- discovery, health, metrics ---- */

/* GET /v1/discovery: the best node for this client now and the live nodes. */
static void discovery(conn *c, const http_request *req)
{
    service *svc = svc_of(c);
    char url[600];
    char node[BUS_NODE_NAME_MAX + 1];
    api_best_node(c, req, url, sizeof url, node, sizeof node);
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"ws_url\":");
    jw_cstr(&b, url);
    iy_buf_append_str(&b, ",\"node\":");
    jw_cstr(&b, node);
    iy_buf_putc(&b, ',');
    registry_json(svc->registry, &b);
    iy_buf_putc(&b, '}');
    conn_http_respond(c, 200, "application/json", b.data, b.len);
    iy_buf_free(&b);
}

/* 1 if the n bytes at a equal the NUL-terminated b, in a time that
 * depends on their lengths only (the token is not guessed byte by byte). */
static int same_secret(const char *a, size_t n, const char *b)
{
    size_t m = strlen(b);
    unsigned char diff = n != m;
    for (size_t i = 0; i < m; i++) diff |= (unsigned char)(b[i] ^ (i < n ? a[i] : 0));
    return diff == 0;
}

static void metrics_page(conn *c, const http_request *req)
{
    iy_buf b = { 0 };
    service *svc = svc_of(c);
    if (svc->cfg.metrics_token[0]) {
        iy_str v = req->authorization;
        if (!(v.len > 7 && strncasecmp(v.ptr, "Bearer ", 7) == 0 &&
              same_secret(v.ptr + 7, v.len - 7, svc->cfg.metrics_token))) {
            char peer[48];
            net_addr_text(c->client, peer, sizeof peer);
            if (iy_log_allow(&iy_log_auth_budget)) iy_log_warn("metrics: unauthorized scrape from %s", peer);
            proto_write_http_error(&b, "unauthorized", "a metrics token is needed");
            conn_http_respond_x(c, 401, "application/json", "WWW-Authenticate: Bearer\r\n", b.data, b.len);
            iy_buf_free(&b);
            return;
        }
    }
    bus_stats bs;
    bus_get_stats(svc->bus, &bs);
    metrics_set(M_BACKLOG, (int64_t)dbq_backlog(svc->dbq));
    metrics_set(M_BUS_RECEIVED, (int64_t)bs.received);
    metrics_set(M_BUS_LAG_MS, (int64_t)bs.lag_ms_sum);
    metrics_set(M_BUS_PUBLISH_ERRORS, (int64_t)bs.publish_errors);
    metrics_set(M_BUS_RECONNECTS, (int64_t)bs.reconnects);
    metrics_set(M_BUS_CONNECTED, bs.connected);
    metrics_set(M_BUS_SUBSCRIPTIONS, (int64_t)bs.subscriptions);
    metrics_set(M_CLUSTER_NODES, (int64_t)registry_count(svc->registry));
    tokens_stats ts;
    tokens_get_stats(svc->tokens, &ts);
    metrics_set(M_TOKEN_CACHE_HITS, (int64_t)ts.hits);
    metrics_set(M_TOKEN_CACHE_MISSES, (int64_t)ts.misses);
    metrics_set(M_TOKEN_CACHE_ENTRIES, (int64_t)ts.entries);
    metrics_render(&b);
    conn_http_respond(c, 200, "text/plain; version=0.0.4", b.data, b.len);
    iy_buf_free(&b);
}

/* GET /healthz: a draining node is out of rotation (load balancers check
 * this), and so is one whose store refuses writes. */
static void healthz(conn *c)
{
    char why[200];
    if (svc_of(c)->draining) {
        conn_http_respond(c, 503, "text/plain", "draining\n", 9);
    } else if (svc_of(c)->store && store_health(svc_of(c)->store, why, sizeof why - 1)) {
        size_t wl = strlen(why);
        why[wl++] = '\n';
        conn_http_respond(c, 503, "text/plain", why, wl);
    } else {
        conn_http_respond(c, 200, "text/plain", "ok\n", 3);
    }
}

/* ---- routing ----
 *
 * routes[] is the list of the API's endpoints, one method and path pattern
 * each. The router finds the entries whose pattern matches the path: one
 * with the request's method is called (HEAD runs GET's, and the transport
 * sends the head alone); if there are some but none with that method, the
 * answer is 405 with Allow (or, for a CORS preflight from an allowed origin,
 * 204 with the Access-Control-* headers); if there are none, 404. The web
 * client's files (paths outside /v1) are served as GET and HEAD.
 *
 * Patterns: literal segments and {name}; a name ending in "id" is a 64-bit
 * id (decimal, proto_parse_id: anything else matches nothing), any other
 * name a raw segment. auth: the endpoint takes a session token; the router
 * answers 401 at once when the Authorization header is missing or is not
 * "Bearer <token>" (the handler checks the token itself).
 *
 * tests/e2e/openapi.test.mjs reads this table from the source: every entry
 * must be documented in docs/openapi.json (with its security) and every
 * documented operation must be here. Keep it one entry per line. */

typedef struct route_args {
    uint64_t id[2];             /* the {…id} segments, in order */
    iy_str s;                   /* the other {name} segment (a session id, an emoji) */
} route_args;

typedef void (*route_fn)(conn *c, const http_request *req, const route_args *a);

typedef struct api_route {
    int method;
    const char *path;
    int auth;
    route_fn fn;
} api_route;

#define ROUTE(name) static void name(conn *c, const http_request *req, const route_args *a)
ROUTE(r_healthz) { healthz(c); }
ROUTE(r_metrics) { metrics_page(c, req); }
ROUTE(r_openapi) { static_api_doc(c, "/openapi.json"); }
ROUTE(r_asyncapi) { static_api_doc(c, "/asyncapi.json"); }
static void ws_not_upgraded(conn *c)
{
    static const char body[] = "{\"error\":{\"code\":\"bad_request\",\"message\":\"GET /v1/ws is a WebSocket "
                               "upgrade (Upgrade: websocket, Sec-WebSocket-Version: 13)\"}}";
    conn_http_respond_x(c, 426, "application/json", "Upgrade: websocket\r\n", body, sizeof body - 1);
}
ROUTE(r_ws) { ws_not_upgraded(c); }
ROUTE(r_signup) { account_signup(c, req); }
ROUTE(r_user_lookup) { account_user_lookup(c, req); }
ROUTE(r_user_get) { account_user_get(c, req, a->id[0]); }
ROUTE(r_user_send) { channels_send(c, req, a->id[0], 1); }
ROUTE(r_login) { account_login(c, req); }
ROUTE(r_sessions) { account_sessions(c, req); }
ROUTE(r_logout) { account_logout(c, req); }
ROUTE(r_session_revoke) { account_session_revoke(c, req, a->s.ptr, a->s.len); }
ROUTE(r_me_get) { account_me(c, req, 0); }
ROUTE(r_me_patch) { account_me(c, req, 1); }
ROUTE(r_me_delete) { account_delete(c, req); }
ROUTE(r_password) { account_password(c, req); }
ROUTE(r_friends) { friends_list(c, req); }
ROUTE(r_friend_put) { friends_put(c, req, a->id[0]); }
ROUTE(r_friend_delete) { friends_delete(c, req, a->id[0]); }
ROUTE(r_blocks) { blocks_list(c, req); }
ROUTE(r_block_put) { blocks_put(c, req, a->id[0]); }
ROUTE(r_block_delete) { blocks_delete(c, req, a->id[0]); }
ROUTE(r_presence) { friends_presence(c, req); }
ROUTE(r_group_create) { channels_group_create(c, req); }
ROUTE(r_channels) { channels_list(c, req); }
ROUTE(r_channel_get) { channels_get(c, req, a->id[0]); }
ROUTE(r_channel_rename) { channels_membership(c, req, a->id[0], IY_EV_RENAMED, 0); }
ROUTE(r_member_add) { channels_membership(c, req, a->id[0], IY_EV_MEMBER_ADDED, 0); }
ROUTE(r_member_remove) { channels_membership(c, req, a->id[0], IY_EV_MEMBER_REMOVED, a->id[1]); }
ROUTE(r_history) { channels_history(c, req, a->id[0]); }
ROUTE(r_channel_send) { channels_send(c, req, a->id[0], 0); }
ROUTE(r_mute) { channels_mute(c, req, a->id[0], 1); }
ROUTE(r_unmute) { channels_mute(c, req, a->id[0], 0); }
ROUTE(r_edit) { channels_change(c, req, a->id[0], IY_EV_EDITED, NULL); }
ROUTE(r_delete) { channels_change(c, req, a->id[0], IY_EV_DELETED, NULL); }
ROUTE(r_search) { search_request(c, req); }
ROUTE(r_upload) { uploads_complete(c, req); }
ROUTE(r_download) { uploads_download(c, req, a->id[0], 0); }
ROUTE(r_thumb) { uploads_download(c, req, a->id[0], 1); }
ROUTE(r_sync) { sync_request(c, req); }
ROUTE(r_vapid) { push_vapid_key(c); }
ROUTE(r_push_sub) { push_sub_create(c, req); }
ROUTE(r_push_unsub) { push_sub_delete(c, req, a->id[0]); }
ROUTE(r_discovery) { discovery(c, req); }

/* PUT and DELETE /v1/messages/{id}/reactions/{emoji}, the emoji %-encoded */
static void react(conn *c, const http_request *req, const route_args *a, int on)
{
    char emoji[IY_EMOJI_MAX + 1];
    int el = http_path_decode(a->s, emoji, sizeof emoji);
    if (el < 0 || proto_check_emoji(emoji, (size_t)el)) {
        conn_http_error(c, IY_EINVAL, "the emoji must be 1 to 32 bytes of UTF-8 without spaces");
        return;
    }
    channels_change(c, req, a->id[0], on ? IY_EV_REACTED : IY_EV_UNREACTED, emoji);
}
ROUTE(r_react) { react(c, req, a, 1); }
ROUTE(r_unreact) { react(c, req, a, 0); }

static const api_route routes[] = {
    { HTTP_GET, "/healthz", 0, r_healthz },
    { HTTP_GET, "/metrics", 0, r_metrics },
    { HTTP_GET, "/v1/openapi.json", 0, r_openapi },
    { HTTP_GET, "/v1/asyncapi.json", 0, r_asyncapi },
    { HTTP_GET, "/v1/ws", 0, r_ws },
    { HTTP_POST, "/v1/users", 0, r_signup },
    { HTTP_GET, "/v1/users", 1, r_user_lookup },
    { HTTP_GET, "/v1/users/{id}", 1, r_user_get },
    { HTTP_POST, "/v1/users/{id}/messages", 1, r_user_send },
    { HTTP_POST, "/v1/sessions", 0, r_login },
    { HTTP_GET, "/v1/sessions", 1, r_sessions },
    { HTTP_DELETE, "/v1/sessions/current", 1, r_logout },
    { HTTP_DELETE, "/v1/sessions/{session}", 1, r_session_revoke },
    { HTTP_GET, "/v1/me", 1, r_me_get },
    { HTTP_PATCH, "/v1/me", 1, r_me_patch },
    { HTTP_DELETE, "/v1/me", 1, r_me_delete },
    { HTTP_PUT, "/v1/me/password", 1, r_password },
    { HTTP_GET, "/v1/friends", 1, r_friends },
    { HTTP_PUT, "/v1/friends/{id}", 1, r_friend_put },
    { HTTP_DELETE, "/v1/friends/{id}", 1, r_friend_delete },
    { HTTP_GET, "/v1/blocks", 1, r_blocks },
    { HTTP_PUT, "/v1/blocks/{id}", 1, r_block_put },
    { HTTP_DELETE, "/v1/blocks/{id}", 1, r_block_delete },
    { HTTP_GET, "/v1/presence", 1, r_presence },
    { HTTP_POST, "/v1/groups", 1, r_group_create },
    { HTTP_GET, "/v1/channels", 1, r_channels },
    { HTTP_GET, "/v1/channels/{id}", 1, r_channel_get },
    { HTTP_PATCH, "/v1/channels/{id}", 1, r_channel_rename },
    { HTTP_POST, "/v1/channels/{id}/members", 1, r_member_add },
    { HTTP_DELETE, "/v1/channels/{id}/members/{user_id}", 1, r_member_remove },
    { HTTP_GET, "/v1/channels/{id}/messages", 1, r_history },
    { HTTP_POST, "/v1/channels/{id}/messages", 1, r_channel_send },
    { HTTP_PUT, "/v1/channels/{id}/mute", 1, r_mute },
    { HTTP_DELETE, "/v1/channels/{id}/mute", 1, r_unmute },
    { HTTP_PATCH, "/v1/messages/{id}", 1, r_edit },
    { HTTP_DELETE, "/v1/messages/{id}", 1, r_delete },
    { HTTP_PUT, "/v1/messages/{id}/reactions/{emoji}", 1, r_react },
    { HTTP_DELETE, "/v1/messages/{id}/reactions/{emoji}", 1, r_unreact },
    { HTTP_GET, "/v1/search", 1, r_search },
    { HTTP_POST, "/v1/uploads", 1, r_upload },
    { HTTP_GET, "/v1/attachments/{id}", 1, r_download },
    { HTTP_GET, "/v1/attachments/{id}/thumb", 1, r_thumb },
    { HTTP_GET, "/v1/sync", 1, r_sync },
    { HTTP_GET, "/v1/push/vapid", 0, r_vapid },
    { HTTP_POST, "/v1/push/subscriptions", 1, r_push_sub },
    { HTTP_DELETE, "/v1/push/subscriptions/{id}", 1, r_push_unsub },
    { HTTP_GET, "/v1/discovery", 0, r_discovery },
};

/* 1 if pattern matches the path's segments (filling a), else 0. */
static int route_match(const char *pattern, const iy_str *seg, int n, route_args *a)
{
    const char *p = pattern + 1;
    int k = 0, ids = 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (k == n) return 0;
        if (p[0] == '{') {
            if (len >= 4 && memcmp(p + len - 3, "id}", 3) == 0) {
                if (ids == 2 || proto_parse_id(seg[k].ptr, seg[k].len, &a->id[ids]) != 0) return 0;
                ids++;
            } else {
                a->s = seg[k];
            }
        } else if (seg[k].len != len || memcmp(seg[k].ptr, p, len) != 0) {
            return 0;
        }
        k++;
        p = e ? e + 1 : p + len;
    }
    return k == n;
}

static const char *method_name(int m)
{
    return llhttp_method_name((llhttp_method_t)m);
}

const char *api_auth_problem(iy_str v)
{
    if (v.len == 0) return "the Authorization header is missing: send Authorization: Bearer <token>";
    if (v.len <= 7 || strncasecmp(v.ptr, "Bearer ", 7) != 0)
        return "the Authorization header is malformed: it must be Bearer <token>";
    return NULL;
}

/* A known path asked with a method it does not take: 405 with Allow, or
 * the answer to a CORS preflight (OPTIONS with Access-Control-Request-Method
 * from an allowed origin, conn.c's c->http->cors). */
static void not_allowed(conn *c, const http_request *req, const char *allow)
{
    iy_buf x = { 0 }, b = { 0 };
    if (req->method == HTTP_OPTIONS && c->http->cors && req->ac_request_method.len) {
        iy_buf_appendf(&x, "Allow: %s\r\nAccess-Control-Allow-Methods: %s\r\n"
                           "Access-Control-Allow-Headers: Authorization, Content-Type\r\n"
                           "Access-Control-Max-Age: 600\r\n", allow, allow);
        conn_http_respond_x(c, 204, NULL, iy_buf_cstr(&x), "", 0);
    } else {
        char m[160];
        snprintf(m, sizeof m, "%s is not allowed here: use %s", method_name(req->method), allow);
        iy_buf_appendf(&x, "Allow: %s\r\n", allow);
        proto_write_http_error(&b, "bad_request", m);
        conn_http_respond_x(c, 405, "application/json", iy_buf_cstr(&x), b.data, b.len);
    }
    iy_buf_free(&x);
    iy_buf_free(&b);
}

void api_head(conn *c, const http_request *head)
{
    c->http->route = (uint8_t)api_route_of(head->path);
    if (head->method == HTTP_POST && iy_str_eq(head->path, "/v1/uploads")) uploads_head(c, head);
}

void api_handle(conn *c, const http_request *req)
{
    iy_str seg[8];
    int n = http_path_split(req->path, seg, 8);
    int m = req->method == HTTP_HEAD ? HTTP_GET : req->method;
    c->http->route = (uint8_t)api_route_of(req->path);
    if (n < 0) { conn_http_error(c, IY_ENOTFOUND, "no such endpoint"); return; }

    /* With an admin listener, /metrics is served there only, and the admin
     * listener serves /metrics and /healthz only. */
    int is_metrics = n == 1 && iy_str_eq(seg[0], "metrics");
    int is_health = n == 1 && iy_str_eq(seg[0], "healthz");
    if (c->t->cfg->admin_listen_set && (c->admin ? !(is_metrics || is_health) : is_metrics)) {
        conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
        return;
    }

    char allow[96] = "";
    size_t al = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        const api_route *r = &routes[i];
        route_args a = { { 0, 0 }, { "", 0 } };
        if (!route_match(r->path, seg, n, &a)) continue;
        if (r->method == m) {
            const char *why = r->auth ? api_auth_problem(req->authorization) : NULL;
            if (why) conn_http_error(c, IY_EUNAUTH, why);
            else r->fn(c, req, &a);
            return;
        }
        const char *name = method_name(r->method);
        if (!strstr(allow, name) && al + 16 < sizeof allow)
            al += (size_t)snprintf(allow + al, sizeof allow - al, "%s%s%s", al ? ", " : "", name,
                                   r->method == HTTP_GET ? ", HEAD" : "");
    }
    if (al) { not_allowed(c, req, allow); return; }
    if (n == 0 || !iy_str_eq(seg[0], "v1")) {
        if (m == HTTP_GET) static_serve(c, req->path);
        else if (static_exists(req->path)) not_allowed(c, req, "GET, HEAD");
        else conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
        return;
    }
    conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
}
