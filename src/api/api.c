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
    if (a->need_auth) {
        int rc = store_session_get(s, a->token, &a->user, a->device);
        if (rc == IY_ENOTFOUND) { api_fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
        if (rc) { api_fail(a, rc, "storage unavailable, retry"); return; }
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
        iy_log_warn("http auth failed from %s on %s: invalid or revoked token", peer, metrics_route_name(c->route));
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
    metrics_render(&b);
    conn_http_respond(c, 200, "text/plain; version=0.0.4", b.data, b.len);
    iy_buf_free(&b);
}

/* ---- routing ---- */

void api_head(conn *c, const http_request *head)
{
    c->route = (uint8_t)api_route_of(head->path);
    if (head->method == HTTP_POST && iy_str_eq(head->path, "/v1/uploads")) uploads_head(c, head);
}

void api_handle(conn *c, const http_request *req)
{
    iy_str seg[8];
    int n = http_path_split(req->path, seg, 8);
    int m = req->method;
    uint64_t id = 0;
    c->route = (uint8_t)api_route_of(req->path);
    if (n < 0) { conn_http_error(c, IY_ENOTFOUND, "no such endpoint"); return; }

    /* With an admin listener, /metrics is served there only, and the admin
     * listener serves /metrics and /healthz only. */
    int is_metrics = n == 1 && iy_str_eq(seg[0], "metrics");
    int is_health = n == 1 && iy_str_eq(seg[0], "healthz");
    if (c->t->cfg->admin_listen_set && (c->admin ? !(is_metrics || is_health) : is_metrics)) {
        conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
        return;
    }

    if (n == 1 && iy_str_eq(seg[0], "healthz") && m == HTTP_GET) {
        /* A draining node is out of rotation (load balancers check this). */
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
        return;
    }
    if (is_metrics && m == HTTP_GET) { metrics_page(c, req); return; }
    if (n == 0 || !iy_str_eq(seg[0], "v1")) {
        if (m == HTTP_GET) static_serve(c, req->path);
        else conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
        return;
    }
    if (n < 2) { conn_http_error(c, IY_ENOTFOUND, "no such endpoint"); return; }

    iy_str r = seg[1];
    int has_id = n >= 3 && proto_parse_id(seg[2].ptr, seg[2].len, &id) == 0;
    if (n >= 3 && !has_id && !(iy_str_eq(r, "sessions") || iy_str_eq(r, "push") || iy_str_eq(r, "me"))) {
        conn_http_error(c, IY_ENOTFOUND, "no such resource");
        return;
    }
    if (iy_str_eq(r, "users")) {
        if (n == 2 && m == HTTP_POST) { account_signup(c, req); return; }
        if (n == 2 && m == HTTP_GET) { account_user_lookup(c, req); return; }
        if (n == 3 && m == HTTP_GET) { account_user_get(c, req, id); return; }
        if (n == 4 && iy_str_eq(seg[3], "messages") && m == HTTP_POST) { channels_send(c, req, id, 1); return; }
    } else if (iy_str_eq(r, "sessions")) {
        if (n == 2 && m == HTTP_POST) { account_login(c, req); return; }
        if (n == 2 && m == HTTP_GET) { account_sessions(c, req); return; }
        if (n == 3 && iy_str_eq(seg[2], "current") && m == HTTP_DELETE) { account_logout(c, req); return; }
        if (n == 3 && m == HTTP_DELETE) { account_session_revoke(c, req, seg[2].ptr, seg[2].len); return; }
    } else if (iy_str_eq(r, "me") && n == 3 && iy_str_eq(seg[2], "password")) {
        if (m == HTTP_PUT) { account_password(c, req); return; }
    } else if (iy_str_eq(r, "me") && n == 2) {
        if (m == HTTP_GET) { account_me(c, req, 0); return; }
        if (m == HTTP_PATCH) { account_me(c, req, 1); return; }
        if (m == HTTP_DELETE) { account_delete(c, req); return; }
    } else if (iy_str_eq(r, "channels")) {
        if (n == 2 && m == HTTP_GET) { channels_list(c, req); return; }
        if (n == 3 && m == HTTP_GET) { channels_get(c, req, id); return; }
        if (n == 4 && iy_str_eq(seg[3], "messages") && m == HTTP_GET) { channels_history(c, req, id); return; }
        if (n == 4 && iy_str_eq(seg[3], "messages") && m == HTTP_POST) { channels_send(c, req, id, 0); return; }
        if (n == 4 && iy_str_eq(seg[3], "mute") && m == HTTP_PUT) { channels_mute(c, req, id, 1); return; }
        if (n == 4 && iy_str_eq(seg[3], "mute") && m == HTTP_DELETE) { channels_mute(c, req, id, 0); return; }
        if (n == 3 && m == HTTP_PATCH) { channels_membership(c, req, id, IY_EV_RENAMED, 0); return; }
        if (n == 4 && iy_str_eq(seg[3], "members") && m == HTTP_POST) {
            channels_membership(c, req, id, IY_EV_MEMBER_ADDED, 0);
            return;
        }
        if (n == 5 && iy_str_eq(seg[3], "members") && m == HTTP_DELETE) {
            uint64_t who;
            if (proto_parse_id(seg[4].ptr, seg[4].len, &who)) { conn_http_error(c, IY_ENOTFOUND, "no such user"); return; }
            channels_membership(c, req, id, IY_EV_MEMBER_REMOVED, who);
            return;
        }
    } else if (iy_str_eq(r, "messages") && n == 3) {
        if (m == HTTP_PATCH) { channels_change(c, req, id, IY_EV_EDITED, NULL); return; }
        if (m == HTTP_DELETE) { channels_change(c, req, id, IY_EV_DELETED, NULL); return; }
    } else if (iy_str_eq(r, "messages") && n == 5 && iy_str_eq(seg[3], "reactions") && (m == HTTP_PUT || m == HTTP_DELETE)) {
        char emoji[IY_EMOJI_MAX + 1];
        int el = http_path_decode(seg[4], emoji, sizeof emoji);
        if (el < 0 || proto_check_emoji(emoji, (size_t)el)) {
            conn_http_error(c, IY_EINVAL, "the emoji must be 1 to 32 bytes of UTF-8 without spaces");
            return;
        }
        channels_change(c, req, id, m == HTTP_PUT ? IY_EV_REACTED : IY_EV_UNREACTED, emoji);
        return;
    } else if (iy_str_eq(r, "groups") && n == 2 && m == HTTP_POST) {
        channels_group_create(c, req);
        return;
    } else if (iy_str_eq(r, "uploads") && n == 2 && m == HTTP_POST) {
        uploads_complete(c, req);
        return;
    } else if (iy_str_eq(r, "attachments") && m == HTTP_GET && (n == 3 || (n == 4 && iy_str_eq(seg[3], "thumb")))) {
        uploads_download(c, req, id, n == 4);
        return;
    } else if (iy_str_eq(r, "search") && n == 2 && m == HTTP_GET) {
        search_request(c, req);
        return;
    } else if (iy_str_eq(r, "sync") && n == 2 && m == HTTP_GET) {
        sync_request(c, req);
        return;
    } else if (iy_str_eq(r, "discovery") && n == 2 && m == HTTP_GET) {
        discovery(c, req);
        return;
    } else if (iy_str_eq(r, "friends")) {
        if (n == 2 && m == HTTP_GET) { friends_list(c, req); return; }
        if (n == 3 && m == HTTP_PUT) { friends_put(c, req, id); return; }
        if (n == 3 && m == HTTP_DELETE) { friends_delete(c, req, id); return; }
    } else if (iy_str_eq(r, "blocks")) {
        if (n == 2 && m == HTTP_GET) { blocks_list(c, req); return; }
        if (n == 3 && m == HTTP_PUT) { blocks_put(c, req, id); return; }
        if (n == 3 && m == HTTP_DELETE) { blocks_delete(c, req, id); return; }
    } else if (iy_str_eq(r, "presence") && n == 2 && m == HTTP_GET) {
        friends_presence(c, req);
        return;
    } else if (iy_str_eq(r, "push")) {
        if (n == 3 && iy_str_eq(seg[2], "vapid") && m == HTTP_GET) { push_vapid_key(c); return; }
        if (n == 3 && iy_str_eq(seg[2], "subscriptions") && m == HTTP_POST) { push_sub_create(c, req); return; }
        if (n == 4 && iy_str_eq(seg[2], "subscriptions") && m == HTTP_DELETE) {
            uint64_t sid;
            if (proto_parse_id(seg[3].ptr, seg[3].len, &sid)) { conn_http_error(c, IY_ENOTFOUND, "no such push subscription"); return; }
            push_sub_delete(c, req, sid);
            return;
        }
    }
    conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
}
