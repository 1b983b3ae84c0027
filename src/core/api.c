/* api.c — the HTTP API of the contract (shared/PROTOCOL.md, "HTTP API").
 *
 * A request is parsed and validated on its I/O thread; anything that needs
 * the store becomes an api_job whose handler runs on the storage thread and
 * leaves a status and a JSON body; the answer is written back on the I/O
 * thread. Multi-step requests (login: look up, verify on the thread pool,
 * create the session) chain stages through job->after. History pages
 * (GET /v1/channels/{id}/messages) run on a reader thread instead (readq.h);
 * GET /v1/sync stays on the storage thread for the reason below.
 *
 * Long polling (GET /v1/sync?wait=S): when the first look finds nothing,
 * the connection registers under its user like a WebSocket does; the next
 * bus batch for that user (or the deadline, checked by the sweep) answers it.
 * The sync answer and later batches travel in one FIFO, so nothing can slip
 * between the look and the registration. */
#include "core_int.h"
#include "metrics.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../base/utf8.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include "../push/pushd.h"
#include "../push/webpush.h"
#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What a send or membership change answers: 201 {message}, 200 {channel}, 204. */
enum send_reply { REPLY_MESSAGE, REPLY_CHANNEL, REPLY_EMPTY };

typedef struct api_job api_job;
typedef void (*api_handler)(store *s, api_job *a);

struct api_job {
    dbq_job j;
    uint64_t conn_id;
    iothread *t;
    api_handler handler;                     /* storage thread */
    void (*then)(conn *c, api_job *a);       /* I/O thread, owns the job; NULL: write the answer */
    int need_auth;
    uint8_t token[32];                       /* SHA-256 of the bearer token */
    uint64_t user;                           /* the caller, after auth */
    char device[IY_DEVICE_MAX + 1];
    uint64_t id;                             /* the id in the path */
    char username[256];                      /* validated to IY_USERNAME_MAX by the handlers */
    char display_name[IY_DISPLAY_MAX + 1];
    int has_display_name;
    char *password;
    size_t password_len;
    char pwhash[256];
    char ws_url[600];
    char new_token[44];
    iy_user u;
    uint64_t after, before;
    int limit, has_before, has_after, wait;
    uint64_t *members;                       /* group create */
    size_t nmembers;
    char name[IY_GROUP_NAME_MAX + 1];
    /* message sends and membership changes (send_authed): */
    int to_user;                             /* POST /v1/users/{id}/messages: id is the user */
    char cmid[IY_CMID_MAX + 1];
    size_t text_len;                         /* of j.text */
    int event;                               /* enum iy_event; 0: a user's message */
    uint64_t subject;                        /* the member added or removed */
    int reply;                               /* enum send_reply */
    iy_push_sub *sub;                        /* push subscription being created */
    int status;
    iy_buf body;
};

static void api_job_free(dbq_job *j)
{
    api_job *a = (api_job *)j;
    if (a->password) {
        memset(a->password, 0, a->password_len);
        iy_free(a->password);
    }
    iy_free(j->text);
    iy_free(a->members);
    iy_free(a->sub);
    iy_buf_free(&a->body);
    iy_free(a);
}

static void fail(api_job *a, int err, const char *message)
{
    a->status = iy_err_http_status(err);
    iy_buf_reset(&a->body);
    proto_write_http_error(&a->body, iy_err_code(err), message);
}

static void ok_user(api_job *a, int status, const iy_user *u)
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
    if (a->need_auth) {
        int rc = store_session_get(s, a->token, &a->user, a->device);
        if (rc == IY_ENOTFOUND) { fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
        if (rc) { fail(a, IY_EIO, "storage error"); return; }
    }
    a->handler(s, a);
}

static void api_done(dbq_job *j)
{
    api_job *a = (api_job *)j;
    conn *c = iothread_conn(a->t, a->conn_id);
    if (c && !c->closing && a->then && a->status < 400) {
        /* The next stage takes over the job's reference. */
        void (*then)(conn *, api_job *) = a->then;
        a->then = NULL;
        then(c, a);
        return;
    }
    if (c && !c->closing) conn_http_respond(c, a->status, "application/json", a->body.data, a->body.len);
    dbq_job_unref(j);
}

static api_job *job_new(conn *c, const http_request *req, api_handler h, int need_auth)
{
    api_job *a = iy_calloc(1, sizeof *a);
    dbq_job_init(&a->j, DBQ_RUN);
    a->j.run = api_run;
    a->j.done = api_done;
    a->j.free = api_job_free;
    a->j.origin = c->t;
    a->t = c->t;
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

/* Submits a (re)initialised job; answers 503 itself if the store is stopping. */
static void submit(conn *c, api_job *a)
{
    c->http_busy = 1;
    conn_pause(c);
    dbq_job_init(&a->j, DBQ_RUN);
    if (dbq_submit(c->t->srv->dbq, &a->j) != 0) {
        conn_http_error(c, IY_EUNAVAIL, "server is shutting down");
        dbq_job_unref(&a->j);
    }
}

/* As submit, to a reader thread (a->j.read set): HTTP is one request at a
 * time per connection, so no key order matters; the connection id spreads
 * connections over the threads. */
static void submit_read(conn *c, api_job *a)
{
    c->http_busy = 1;
    conn_pause(c);
    if (readq_submit(c->t->srv->readq, &a->j, c->id * 31 + c->t->index) != 0) {
        conn_http_error(c, IY_EUNAVAIL, "server is shutting down");
        dbq_job_unref(&a->j);
    }
}

static void ws_url_for(conn *c, const http_request *req, char *out, size_t n)
{
    const char *pub = c->t->srv->cfg.public_url;
    if (pub[0]) {
        const char *rest = pub;
        const char *scheme = "ws://";
        if (strncmp(pub, "https://", 8) == 0) { scheme = "wss://"; rest = pub + 8; }
        else if (strncmp(pub, "http://", 7) == 0) rest = pub + 7;
        size_t len = strlen(rest);
        while (len && rest[len - 1] == '/') len--;
        snprintf(out, n, "%s%.*s/v1/ws", scheme, (int)len, rest);
    } else if (req && req->host.len && req->host.len < 256) {
        snprintf(out, n, "ws://%.*s/v1/ws", (int)req->host.len, req->host.ptr);
    } else {
        snprintf(out, n, "ws://%s:%d/v1/ws", c->t->srv->cfg.listen_host, c->t->srv->cfg.listen_port);
    }
}

/* ---- body parsing helpers ---- */

static json_t *parse_body(conn *c, const http_request *req)
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

/* A string field: 1 (copied), 0 (absent or null), or an error answered. */
static int get_str(conn *c, json_t *o, const char *key, char *out, size_t cap, int required)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) {
            char m[96];
            snprintf(m, sizeof m, "%s is required", key);
            conn_http_error(c, IY_EINVAL, m);
            return IY_EINVAL;
        }
        return 0;
    }
    if (!json_is_string(v)) {
        char m[96];
        snprintf(m, sizeof m, "%s must be a string", key);
        conn_http_error(c, IY_EINVAL, m);
        return IY_EINVAL;
    }
    size_t n = json_string_length(v);
    if (n >= cap) {
        char m[96];
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

static int valid_username(const char *u)
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

static int check_display_name(conn *c, const char *s)
{
    if (iy_utf8_count(s, strlen(s)) > IY_DISPLAY_MAX_CP) {
        conn_http_error(c, IY_ETOOBIG, "display_name is at most 64 characters");
        return IY_ETOOBIG;
    }
    return 0;
}

/* ---- signup ---- */

static void signup_store(store *s, api_job *a)
{
    int rc = store_user_create(s, a->username, a->has_display_name ? a->display_name : a->username,
                               a->pwhash, &a->u);
    if (rc == IY_ECONFLICT) fail(a, IY_ECONFLICT, "username is taken");
    else if (rc) fail(a, IY_EIO, "storage error");
    else {
        ok_user(a, 201, &a->u);
        iy_log("signup: user %llu (%s)", (unsigned long long)a->u.id, a->u.username);
    }
}

static void signup_hashed(void *ctx, int err, const char *encoded)
{
    api_job *a = ctx;
    conn *c = iothread_conn(a->t, a->conn_id);
    if (!c || c->closing) { dbq_job_unref(&a->j); return; }
    if (err) {
        conn_http_error(c, IY_EIO, "password hashing failed");
        dbq_job_unref(&a->j);
        return;
    }
    snprintf(a->pwhash, sizeof a->pwhash, "%s", encoded);
    submit(c, a);
}

static void signup(conn *c, const http_request *req)
{
    json_t *o = parse_body(c, req);
    if (!o) return;
    api_job *a = job_new(c, req, signup_store, 0);
    char pw[IY_PASSWORD_MAX + 1];
    int rc;
    json_t *un = json_object_get(o, "username");
    if (json_is_string(un) && json_string_length(un) > IY_USERNAME_MAX) {
        conn_http_error(c, IY_EINVAL, "username must be 3 to 32 of a-z 0-9 _ . -");
        goto out;
    }
    if ((rc = get_str(c, o, "username", a->username, sizeof a->username, 1)) < 0) goto out;
    if (!valid_username(a->username)) {
        conn_http_error(c, IY_EINVAL, "username must be 3 to 32 of a-z 0-9 _ . -");
        goto out;
    }
    if ((rc = get_str(c, o, "password", pw, sizeof pw, 1)) < 0) goto out;
    if (strlen(pw) < IY_PASSWORD_MIN) {
        conn_http_error(c, IY_EINVAL, "password must be at least 8 characters");
        goto out;
    }
    if ((rc = get_str(c, o, "display_name", a->display_name, sizeof a->display_name, 0)) < 0) goto out;
    a->has_display_name = rc == 1 && a->display_name[0];
    if (a->has_display_name && check_display_name(c, a->display_name)) goto out;
    json_decref(o);
    c->http_busy = 1;
    conn_pause(c);
    auth_hash_password(c->t, pw, strlen(pw), signup_hashed, a);
    memset(pw, 0, sizeof pw);
    return;
out:
    memset(pw, 0, sizeof pw);
    json_decref(o);
    dbq_job_unref(&a->j);
}

/* ---- login: look up, verify (thread pool), create the session ---- */

static void login_session_store(store *s, api_job *a)
{
    if (store_session_create(s, a->token, a->u.id, a->device)) {
        fail(a, IY_EIO, "storage error");
        return;
    }
    iy_log("login: user %llu, device %s", (unsigned long long)a->u.id, a->device);
    a->status = 201;
    iy_buf *b = &a->body;
    iy_buf_append_str(b, "{\"token\":");
    jw_cstr(b, a->new_token);
    iy_buf_append_str(b, ",\"user\":");
    proto_write_user(b, &a->u);
    iy_buf_append_str(b, ",\"device\":");
    jw_cstr(b, a->device);
    iy_buf_append_str(b, ",\"ws_url\":");
    jw_cstr(b, a->ws_url);
    iy_buf_putc(b, '}');
}

static void login_verified(void *ctx, int ok)
{
    api_job *a = ctx;
    conn *c = iothread_conn(a->t, a->conn_id);
    if (!c || c->closing) { dbq_job_unref(&a->j); return; }
    if (!ok) {
        /* Only a well-formed name reaches the log: no control characters from clients. */
        iy_log("login failed for %s", valid_username(a->username) ? a->username : "(a malformed username)");
        conn_http_error(c, IY_EUNAUTH, "wrong username or password");
        dbq_job_unref(&a->j);
        return;
    }
    auth_token_new(a->new_token, a->token);
    a->handler = login_session_store;
    submit(c, a);
}

static void login_lookup_store(store *s, api_job *a)
{
    int rc = store_user_find(s, a->username, &a->u, a->pwhash);
    if (rc == IY_ENOTFOUND || rc == IY_EINVAL) a->pwhash[0] = '\0'; /* verified against a dummy: same time */
    else if (rc) fail(a, IY_EIO, "storage error");
}

static void login_looked_up(conn *c, api_job *a)
{
    auth_verify_password(c->t, a->pwhash, a->password, a->password_len, login_verified, a);
    /* the conn stays paused and busy until the answer */
    c->http_busy = 1;
    conn_pause(c);
}

static void login(conn *c, const http_request *req)
{
    json_t *o = parse_body(c, req);
    if (!o) return;
    api_job *a = job_new(c, req, login_lookup_store, 0);
    char pw[IY_PASSWORD_MAX + 1];
    int rc;
    if ((rc = get_str(c, o, "username", a->username, sizeof a->username, 1)) < 0) goto out;
    if ((rc = get_str(c, o, "password", pw, sizeof pw, 1)) < 0) goto out;
    if ((rc = get_str(c, o, "device", a->device, sizeof a->device, 0)) < 0) goto out;
    if (rc == 0 || !a->device[0]) {
        memcpy(a->device, "d-", 2);
        auth_random_hex(a->device + 2, 8);
    }
    a->password_len = strlen(pw);
    a->password = iy_strndup(pw, a->password_len);
    ws_url_for(c, req, a->ws_url, sizeof a->ws_url);
    a->then = login_looked_up;
    json_decref(o);
    memset(pw, 0, sizeof pw);
    submit(c, a);
    return;
out:
    memset(pw, 0, sizeof pw);
    json_decref(o);
    dbq_job_unref(&a->j);
}

/* ---- sessions, users ---- */

static void logout_store(store *s, api_job *a)
{
    if (store_session_delete(s, a->token)) { fail(a, IY_EIO, "storage error"); return; }
    iy_log("logout: user %llu, device %s", (unsigned long long)a->user, a->device);
    /* Published from the storage thread: after every auth that could still
     * have used this token, so no socket of the session survives. */
    bus_revoke(a->t->srv->bus, a->user, a->token);
    a->status = 204;
}

static void me_store(store *s, api_job *a)
{
    int rc = 0;
    if (a->has_display_name) rc = store_user_set_display_name(s, a->user, a->display_name);
    if (!rc) rc = store_user_get(s, a->user, &a->u);
    if (rc) fail(a, rc == IY_ENOTFOUND ? IY_ENOTFOUND : IY_EIO, "no such user");
    else ok_user(a, 200, &a->u);
}

static void user_get_store(store *s, api_job *a)
{
    int rc = a->username[0] ? store_user_find(s, a->username, &a->u, NULL) : store_user_get(s, a->id, &a->u);
    if (rc == IY_ENOTFOUND || rc == IY_EINVAL) fail(a, IY_ENOTFOUND, "no such user");
    else if (rc) fail(a, IY_EIO, "storage error");
    else ok_user(a, 200, &a->u);
}

/* ---- channels ---- */

static int member_of(const iy_channel *ch, uint64_t user)
{
    for (uint32_t i = 0; i < ch->nmembers; i++)
        if (ch->members[i] == user) return 1;
    return 0;
}

/* 0 with *ch filled when the caller may read the channel; else answered. */
static int load_channel(store *s, api_job *a, iy_channel *ch)
{
    int rc = store_channel_get(s, a->id, ch);
    if (rc == IY_ENOTFOUND) { fail(a, IY_ENOTFOUND, "no such channel"); return rc; }
    if (rc) { fail(a, IY_EIO, "storage error"); return rc; }
    if (!member_of(ch, a->user)) { fail(a, IY_EFORBIDDEN, "not a member of this channel"); return IY_EFORBIDDEN; }
    return 0;
}

static void channel_get_store(store *s, api_job *a)
{
    iy_channel *ch = iy_malloc(sizeof *ch);
    if (load_channel(s, a, ch) == 0) {
        iy_buf_append_str(&a->body, "{\"channel\":");
        proto_write_channel(&a->body, ch, 1);
        iy_buf_putc(&a->body, '}');
    }
    iy_free(ch);
}

static void write_messages(iy_buf *b, const iy_msg_list *l)
{
    iy_buf_append_str(b, "\"messages\":[");
    for (size_t i = 0; i < l->n; i++) {
        if (i) iy_buf_putc(b, ',');
        proto_write_message(b, &l->v[i]);
    }
    iy_buf_putc(b, ']');
}

/* Reader thread (readq.h): GET /v1/channels/{id}/messages needs no order
 * against the bus, so the token, the membership and the page are all read
 * from committed data there. */
static void history_read(store_reader *r, dbq_job *j)
{
    api_job *a = (api_job *)j;
    iy_msg_list l = { 0 };
    iy_buf_reset(&a->body);
    int rc = store_reader_session(r, a->token, &a->user, a->device);
    if (rc == IY_ENOTFOUND) { fail(a, IY_EUNAUTH, "invalid or revoked token"); return; }
    if (rc) { fail(a, IY_EIO, "storage error"); return; }
    rc = store_reader_is_member(r, a->id, a->user);
    if (rc == IY_ENOTFOUND) { fail(a, IY_ENOTFOUND, "no such channel"); return; }
    if (rc == IY_EFORBIDDEN) { fail(a, IY_EFORBIDDEN, "not a member of this channel"); return; }
    if (rc == 0)
        rc = store_reader_history(r, a->id, a->has_after ? 0 : (a->has_before ? a->before : UINT64_MAX),
                                  a->has_after ? a->after : 0, a->limit, &l);
    if (rc) {
        fail(a, IY_EIO, "storage error");
    } else {
        iy_buf_putc(&a->body, '{');
        write_messages(&a->body, &l);
        iy_buf_putc(&a->body, '}');
    }
    iy_msg_list_clear(&l);
}

/* One row of GET /v1/channels, kept to sort by newest activity. */
typedef struct channel_row {
    uint64_t newest;      /* id of the last message (time-sortable), or the channel id */
    size_t off, len;      /* the row's JSON in the scratch buffer */
} channel_row;

static int row_newest_first(const void *x, const void *y)
{
    const channel_row *a = x, *b = y;
    return a->newest < b->newest ? 1 : a->newest > b->newest ? -1 : 0;
}

static void channels_store(store *s, api_job *a)
{
    uint64_t *ids = NULL;
    size_t n = 0;
    if (store_user_channels(s, a->user, &ids, &n)) { fail(a, IY_EIO, "storage error"); return; }
    iy_channel *ch = iy_malloc(sizeof *ch);
    channel_row *rows = iy_calloc(n ? n : 1, sizeof *rows);
    size_t nrows = 0;
    iy_buf tmp = { 0 };
    for (size_t i = 0; i < n; i++) {
        iy_msg last;
        memset(&last, 0, sizeof last);
        if (store_channel_get(s, ids[i], ch) != 0) continue;
        int has_last = store_channel_last(s, ids[i], &last) == 0;
        uint64_t read = 0;
        store_read_get(s, a->user, ids[i], &read);
        channel_row *r = &rows[nrows++];
        r->newest = has_last ? last.id : ch->id;
        r->off = tmp.len;
        iy_buf_append_str(&tmp, "{\"channel\":");
        proto_write_channel(&tmp, ch, 1);
        iy_buf_append_str(&tmp, ",\"last_message\":");
        if (has_last) proto_write_message(&tmp, &last);
        else iy_buf_append_str(&tmp, "null");
        iy_buf_append_str(&tmp, ",\"unread\":");
        jw_u64(&tmp, has_last && last.seq > read ? last.seq - read : 0);
        iy_buf_putc(&tmp, '}');
        r->len = tmp.len - r->off;
        iy_msg_clear(&last);
    }
    qsort(rows, nrows, sizeof *rows, row_newest_first);
    iy_buf_append_str(&a->body, "{\"channels\":[");
    for (size_t i = 0; i < nrows; i++) {
        if (i) iy_buf_putc(&a->body, ',');
        iy_buf_append(&a->body, tmp.data + rows[i].off, rows[i].len);
    }
    iy_buf_append_str(&a->body, "]}");
    iy_buf_free(&tmp);
    iy_free(rows);
    iy_free(ch);
    iy_free(ids);
}

static void group_create_store(store *s, api_job *a)
{
    iy_channel *ch = iy_malloc(sizeof *ch);
    /* The creator is a member, added if absent. */
    int has = 0;
    for (size_t i = 0; i < a->nmembers; i++) has |= a->members[i] == a->user;
    if (!has) {
        a->members = iy_realloc(a->members, (a->nmembers + 1) * sizeof *a->members);
        a->members[a->nmembers++] = a->user;
    }
    int rc = a->nmembers > IY_GROUP_MAX ? IY_ETOOBIG
             : store_group_create(s, a->user, a->name, a->members, a->nmembers, ch);
    if (rc == IY_ETOOBIG) fail(a, IY_ETOOBIG, "a group has at most 100 members");
    else if (rc == IY_ENOTFOUND) fail(a, IY_ENOTFOUND, "no such user");
    else if (rc == IY_EINVAL) fail(a, IY_EINVAL, "a group needs at least 2 members");
    else if (rc) fail(a, IY_EIO, "storage error");
    else {
        a->status = 201;
        iy_buf_append_str(&a->body, "{\"channel\":");
        proto_write_channel(&a->body, ch, 1);
        iy_buf_putc(&a->body, '}');
        /* Members' open sockets learn of the new group at once ({"op":"channel",
         * "channel":{...}}, not stored: offline devices find it in GET /v1/channels). */
        iy_buf f = { 0 };
        iy_buf_append_str(&f, "{\"op\":\"channel\",\"channel\":");
        proto_write_channel(&f, ch, 1);
        iy_buf_putc(&f, '}');
        bus_notify(a->t->srv->bus, bus_notice_new(ch->members, ch->nmembers, f.data, f.len));
        iy_buf_free(&f);
    }
    iy_free(ch);
}

static void group_create(conn *c, const http_request *req)
{
    json_t *o = parse_body(c, req);
    if (!o) return;
    api_job *a = job_new(c, req, group_create_store, 1);
    if (get_str(c, o, "name", a->name, sizeof a->name, 1) < 0) goto out;
    json_t *m = json_object_get(o, "members");
    if (!json_is_array(m)) { conn_http_error(c, IY_EINVAL, "members must be an array of user ids"); goto out; }
    if (json_array_size(m) > IY_GROUP_MAX) { conn_http_error(c, IY_ETOOBIG, "a group has at most 100 members"); goto out; }
    a->members = iy_calloc(json_array_size(m) + 1, sizeof *a->members);
    for (size_t i = 0; i < json_array_size(m); i++) {
        json_t *v = json_array_get(m, i);
        uint64_t id;
        if (!json_is_string(v) || proto_parse_id(json_string_value(v), json_string_length(v), &id)) {
            conn_http_error(c, IY_EINVAL, "members must be an array of user ids");
            goto out;
        }
        int dup = 0;
        for (size_t k = 0; k < a->nmembers; k++) dup |= a->members[k] == id;
        if (!dup) a->members[a->nmembers++] = id;
    }
    json_decref(o);
    submit(c, a);
    return;
out:
    json_decref(o);
    dbq_job_unref(&a->j);
}

/* ---- sending over HTTP: authenticate, then a send job ----
 * Also carries membership changes, which are messages of their channel
 * (store.h, enum iy_event). */


typedef struct http_send {
    dbq_job j;            /* DBQ_SEND */
    iothread *t;
    uint64_t conn_id;
    char cmid[IY_CMID_MAX + 1];
    int reply;            /* enum send_reply */
    uint8_t token[32];    /* for the follow-up read of REPLY_CHANNEL */
} http_send;

static void http_send_free(dbq_job *j)
{
    iy_free(j->text);
    iy_free(j);
}

static const char *send_error_message(int err, int event)
{
    switch (err) {
    case IY_ENOTFOUND: return event ? "no such user, channel or member" : "no such user or channel";
    case IY_EFORBIDDEN: return event ? "only the owner may do that" : "not a member of this channel";
    case IY_EINVAL: return event ? "not possible on this channel" : "cannot send a message to yourself";
    case IY_ECONFLICT: return "already a member";
    case IY_ETOOBIG: return "a group has at most 100 members";
    default: return "storage unavailable, retry";
    }
}

static void channel_get_store(store *s, api_job *a);

static void http_send_done(dbq_job *j)
{
    http_send *h = (http_send *)j;
    conn *c = iothread_conn(h->t, h->conn_id);
    if (c && !c->closing) {
        if (j->err != 0 && j->err != IY_EEXIST) {
            /* A channel the caller is not in reads as forbidden, also for events. */
            int err = j->err == IY_EFORBIDDEN && j->send.event ? IY_EFORBIDDEN : j->err;
            conn_http_error(c, err, send_error_message(j->err, j->send.event));
        } else if (h->reply == REPLY_EMPTY) {
            conn_http_respond(c, 204, NULL, "", 0);
        } else if (h->reply == REPLY_CHANNEL) {
            api_job *g = job_new(c, NULL, channel_get_store, 1);
            memcpy(g->token, h->token, 32);
            g->id = j->stored.msg.channel;
            submit(c, g);
        } else {
            iy_msg m = j->stored.msg;
            m.text = j->text;
            m.text_len = j->send.text_len;
            iy_buf b = { 0 };
            iy_buf_append_str(&b, "{\"message\":");
            proto_write_message(&b, &m);
            iy_buf_putc(&b, '}');
            conn_http_respond(c, j->err == IY_EEXIST ? 200 : 201, "application/json", b.data, b.len);
            iy_buf_free(&b);
        }
    }
    dbq_job_unref(j);
}

/* After authentication: the send (or membership event) described by a's
 * id, to_user, j.text/text_len, cmid, event, subject goes to the storage thread. */
static void send_authed(conn *c, api_job *a)
{
    if (dbq_backlog(c->t->srv->dbq) >= (size_t)c->t->srv->cfg.max_backlog) {
        metrics_add(M_SHED, 1);
        conn_http_error(c, IY_EUNAVAIL, "server busy, retry with the same cmid");
        dbq_job_unref(&a->j);
        return;
    }
    http_send *h = iy_calloc(1, sizeof *h);
    dbq_job_init(&h->j, DBQ_SEND);
    h->j.done = http_send_done;
    h->j.free = http_send_free;
    h->j.origin = c->t;
    h->t = c->t;
    h->conn_id = c->id;
    h->reply = a->reply;
    memcpy(h->token, a->token, 32);
    if (!a->event) memcpy(h->cmid, a->cmid, sizeof h->cmid);
    h->j.text = a->j.text;
    a->j.text = NULL;
    h->j.send = (iy_send){ .from = a->user, .channel = a->to_user ? 0 : a->id, .to = a->to_user ? a->id : 0,
                           .text = h->j.text ? h->j.text : "", .text_len = a->text_len,
                           .cmid = h->cmid, .event = a->event, .subject = a->subject };
    h->j.origin_thread = c->t->index;
    h->j.origin_conn = 0;
    c->http_busy = 1;
    conn_pause(c);
    if (dbq_submit(c->t->srv->dbq, &h->j) != 0) {
        conn_http_error(c, IY_EUNAVAIL, "server is shutting down");
        dbq_job_unref(&h->j);
    }
    dbq_job_unref(&a->j);
}

static void nothing_store(store *s, api_job *a) { (void)s; (void)a; }

static void send_message(conn *c, const http_request *req, uint64_t id, int to_user)
{
    json_t *o = parse_body(c, req);
    if (!o) return;
    api_job *a = job_new(c, req, nothing_store, 1);
    a->id = id;
    a->to_user = to_user;
    json_t *t = json_object_get(o, "text");
    char msg[160];
    if (!json_is_string(t)) { conn_http_error(c, IY_EINVAL, "text must be a string"); goto out; }
    int rc = proto_check_text(json_string_value(t), json_string_length(t), msg, sizeof msg);
    if (rc) { conn_http_error(c, rc, msg); goto out; }
    if (get_str(c, o, "cmid", a->cmid, sizeof a->cmid, 0) < 0) goto out;
    a->text_len = json_string_length(t);
    a->j.text = iy_strndup(json_string_value(t), a->text_len);
    a->reply = REPLY_MESSAGE;
    a->then = send_authed;
    json_decref(o);
    submit(c, a);
    return;
out:
    json_decref(o);
    dbq_job_unref(&a->j);
}

/* ---- sync and long polling ---- */

#define SYNC_EMPTY 299 /* internal: nothing after `after` yet; the I/O thread may wait */

static void sync_store(store *s, api_job *a)
{
    iy_msg_list l = { 0 };
    int more = 0;
    uint64_t pos = 0;
    int rc = store_sync(s, a->user, a->after, a->limit, &l, &more);
    if (!rc && l.n) pos = l.v[l.n - 1].pos;
    else if (!rc) rc = store_user_pos(s, a->user, &pos);
    if (rc) {
        fail(a, IY_EIO, "storage error");
        iy_msg_list_clear(&l);
        return;
    }
    if (!l.n && pos > a->after) pos = a->after;
    iy_buf_putc(&a->body, '{');
    write_messages(&a->body, &l);
    iy_buf_append_str(&a->body, ",\"pos\":");
    jw_u64(&a->body, pos);
    iy_buf_append_str(&a->body, more ? ",\"more\":true}" : ",\"more\":false}");
    a->status = l.n ? 200 : SYNC_EMPTY;
    iy_msg_list_clear(&l);
}

static void sync_answered(conn *c, api_job *a)
{
    if (a->status == SYNC_EMPTY && a->wait > 0) {
        c->user = a->user;
        memcpy(c->session, a->token, 32);
        c->registered = 1;
        iothread_user_add(c->t, c);
        c->http_waiting = 1;
        c->http_busy = 1;
        c->wait_after = a->after;
        c->wait_limit = a->limit;
        c->wait_deadline_ms = uv_now(&c->t->loop) + (uint64_t)a->wait * 1000;
    } else {
        conn_http_respond(c, 200, "application/json", a->body.data, a->body.len);
    }
    dbq_job_unref(&a->j);
}

static void sync_submit(conn *c, const http_request *req, uint64_t after, int limit, int wait)
{
    api_job *a = job_new(c, req, sync_store, 1);
    if (!req) memcpy(a->token, c->session, 32); /* a wake-up: the session that waited */
    a->after = after;
    a->limit = limit;
    a->wait = wait;
    a->then = sync_answered;
    submit(c, a);
}

static void unwait(conn *c)
{
    if (c->registered) {
        iothread_user_del(c->t, c);
        c->registered = 0;
    }
    c->http_waiting = 0;
}

void api_wait_wake(conn *c)
{
    if (!c->http_waiting) return;
    unwait(c);
    sync_submit(c, NULL, c->wait_after, c->wait_limit, 0);
}

void api_wait_expire(conn *c)
{
    if (!c->http_waiting) return;
    unwait(c);
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"messages\":[],\"pos\":");
    jw_u64(&b, c->wait_after);
    iy_buf_append_str(&b, ",\"more\":false}");
    conn_http_respond(c, 200, "application/json", b.data, b.len);
    iy_buf_free(&b);
}

/* ---- group membership and names: event messages ---- */

static void membership(conn *c, const http_request *req, uint64_t channel, int event, uint64_t subject)
{
    api_job *a = job_new(c, req, nothing_store, 1);
    a->id = channel;
    a->event = event;
    a->subject = subject;
    a->reply = event == IY_EV_MEMBER_REMOVED ? REPLY_EMPTY : REPLY_CHANNEL;
    if (event == IY_EV_MEMBER_ADDED || event == IY_EV_RENAMED) {
        json_t *o = parse_body(c, req);
        if (!o) { dbq_job_unref(&a->j); return; }
        if (event == IY_EV_MEMBER_ADDED) {
            json_t *v = json_object_get(o, "user_id");
            if (!json_is_string(v) || proto_parse_id(json_string_value(v), json_string_length(v), &a->subject)) {
                json_decref(o);
                conn_http_error(c, IY_EINVAL, "user_id must be a user id");
                dbq_job_unref(&a->j);
                return;
            }
        } else {
            int rc = get_str(c, o, "name", a->name, sizeof a->name, 1);
            if (rc < 0 || !a->name[0]) {
                if (rc >= 0) conn_http_error(c, IY_EINVAL, "name must not be empty");
                json_decref(o);
                dbq_job_unref(&a->j);
                return;
            }
            a->text_len = strlen(a->name);
            a->j.text = iy_strndup(a->name, a->text_len);
        }
        json_decref(o);
    }
    a->then = send_authed;
    submit(c, a);
}

/* ---- friends ---- */

static void friend_put_store(store *s, api_job *a)
{
    int st = 0, rc = store_friend_put(s, a->user, a->id, &st);
    if (rc == IY_ENOTFOUND) { fail(a, IY_ENOTFOUND, "no such user"); return; }
    if (rc == IY_EINVAL) { fail(a, IY_EINVAL, "you cannot befriend yourself"); return; }
    if (rc) { fail(a, IY_EIO, "storage error"); return; }
    iy_buf_append_str(&a->body, st == IY_FRIEND_MUTUAL ? "{\"state\":\"friends\"}" : "{\"state\":\"outgoing\"}");
    if (st == IY_FRIEND_MUTUAL) {
        /* New friends learn each other's presence at once. */
        social_push_presence(a->t->srv, s, a->user, &a->id, 1);
        social_push_presence(a->t->srv, s, a->id, &a->user, 1);
    }
}

static void friend_delete_store(store *s, api_job *a)
{
    int rc = store_friend_delete(s, a->user, a->id);
    if (rc == IY_ENOTFOUND) fail(a, IY_ENOTFOUND, "no such user");
    else if (rc == IY_EINVAL) fail(a, IY_EINVAL, "you cannot unfriend yourself");
    else if (rc) fail(a, IY_EIO, "storage error");
    else a->status = 204;
}

static void user_array(store *s, iy_buf *b, const uint64_t *ids, size_t n)
{
    iy_buf_putc(b, '[');
    int first = 1;
    for (size_t i = 0; i < n; i++) {
        iy_user u;
        if (store_user_get(s, ids[i], &u) != 0) continue;
        if (!first) iy_buf_putc(b, ',');
        first = 0;
        proto_write_user(b, &u);
    }
    iy_buf_putc(b, ']');
}

static void friends_list_store(store *s, api_job *a)
{
    uint64_t *f = NULL, *in = NULL, *out = NULL;
    size_t nf = 0, ni = 0, no = 0;
    if (store_friend_list(s, a->user, &f, &nf, &in, &ni, &out, &no)) {
        fail(a, IY_EIO, "storage error");
        return;
    }
    iy_buf *b = &a->body;
    iy_buf_append_str(b, "{\"friends\":[");
    int first = 1;
    for (size_t i = 0; i < nf; i++) {
        iy_user u;
        if (store_user_get(s, f[i], &u) != 0) continue;
        int online;
        int64_t last;
        social_presence_of(a->t->srv, s, f[i], &online, &last);
        if (!first) iy_buf_putc(b, ',');
        first = 0;
        iy_buf_append_str(b, "{\"user\":");
        proto_write_user(b, &u);
        iy_buf_append_str(b, ",\"presence\":{");
        social_presence_fields(b, f[i], online, last);
        iy_buf_append_str(b, "}}");
    }
    iy_buf_append_str(b, "],\"incoming\":");
    user_array(s, b, in, ni);
    iy_buf_append_str(b, ",\"outgoing\":");
    user_array(s, b, out, no);
    iy_buf_putc(b, '}');
    iy_free(f);
    iy_free(in);
    iy_free(out);
}

/* ---- presence ---- */

static void presence_store(store *s, api_job *a)
{
    iy_buf_putc(&a->body, '{');
    social_presence_list(&a->body, a->t->srv, s, a->user, a->members, a->nmembers);
    iy_buf_putc(&a->body, '}');
}

static void presence_query(conn *c, const http_request *req)
{
    char list[IY_PRESENCE_QUERY_MAX * 21 + 1];
    int rc = http_query_get(req->query, "users", list, sizeof list);
    if (rc != 1 || !list[0]) {
        conn_http_error(c, rc == IY_EINVAL ? IY_ETOOBIG : IY_EINVAL,
                        rc == IY_EINVAL ? "at most 200 users" : "give ?users=ID,ID");
        return;
    }
    api_job *a = job_new(c, req, presence_store, 1);
    a->members = iy_calloc(IY_PRESENCE_QUERY_MAX, sizeof *a->members);
    for (char *tok = list, *end; tok; tok = end ? end + 1 : NULL) {
        end = strchr(tok, ',');
        size_t n = end ? (size_t)(end - tok) : strlen(tok);
        uint64_t id;
        if (a->nmembers == IY_PRESENCE_QUERY_MAX || proto_parse_id(tok, n, &id)) {
            conn_http_error(c, a->nmembers == IY_PRESENCE_QUERY_MAX ? IY_ETOOBIG : IY_EINVAL,
                            a->nmembers == IY_PRESENCE_QUERY_MAX ? "at most 200 users" : "users must be user ids");
            dbq_job_unref(&a->j);
            return;
        }
        a->members[a->nmembers++] = id;
    }
    submit(c, a);
}

/* ---- push subscriptions ----
 * POST: validate the body, authenticate, then (unless --push-allow-private)
 * resolve the endpoint's host on libuv's thread pool and refuse it if any
 * address is loopback/private/link-local, then store it. The push worker
 * checks the address again when it connects (DNS may change). */

static void push_sub_store(store *s, api_job *a)
{
    a->sub->user = a->user;
    memcpy(a->sub->device, a->device, sizeof a->sub->device);
    int rc = store_push_sub_create(s, a->sub);
    if (rc == IY_ETOOBIG) { fail(a, IY_ETOOBIG, "at most 32 push subscriptions per user"); return; }
    if (rc) { fail(a, IY_EIO, "storage error"); return; }
    a->status = 201;
    iy_buf *b = &a->body;
    int hook = a->sub->kind == IY_PUSH_WEBHOOK;
    iy_buf_append_str(b, "{\"subscription\":{\"id\":");
    jw_id(b, a->sub->id);
    iy_buf_append_str(b, hook ? ",\"kind\":\"webhook\",\"url\":" : ",\"kind\":\"webpush\",\"endpoint\":");
    jw_cstr(b, a->sub->url);
    iy_buf_putc(b, '}');
    if (hook) {
        /* The HMAC key is shown once, here. */
        iy_buf_append_str(b, ",\"secret\":");
        jw_cstr(b, a->sub->secret);
    }
    iy_buf_putc(b, '}');
}

typedef struct resolve_req {
    uv_getaddrinfo_t req;
    api_job *a;
} resolve_req;

static void push_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *r = req->data;
    api_job *a = r->a;
    conn *c = iothread_conn(a->t, a->conn_id);
    int ok = status == 0 && res;
    for (struct addrinfo *ai = res; ok && ai; ai = ai->ai_next) ok = push_address_public(ai->ai_addr);
    uv_freeaddrinfo(res);
    iy_free(r);
    if (!c || c->closing) { dbq_job_unref(&a->j); return; }
    if (!ok) {
        conn_http_error(c, IY_EINVAL, status == 0 ? "push endpoints may not be on loopback, private or link-local addresses"
                                                  : "cannot resolve the push endpoint's host");
        dbq_job_unref(&a->j);
        return;
    }
    a->handler = push_sub_store;
    submit(c, a);
}

static void push_sub_authed(conn *c, api_job *a)
{
    if (c->t->srv->cfg.push_allow_private) {
        a->handler = push_sub_store;
        submit(c, a);
        return;
    }
    char *host = NULL;
    CURLU *u = curl_url();
    curl_url_set(u, CURLUPART_URL, a->sub->url, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_cleanup(u);
    if (!host) {
        conn_http_error(c, IY_EINVAL, "the push endpoint has no host");
        dbq_job_unref(&a->j);
        return;
    }
    /* IPv6 literals come bracketed. */
    char name[256];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') snprintf(name, sizeof name, "%.*s", (int)(n - 2), host + 1);
    else snprintf(name, sizeof name, "%s", host);
    curl_free(host);
    resolve_req *r = iy_calloc(1, sizeof *r);
    r->a = a;
    r->req.data = r;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
    c->http_busy = 1;
    conn_pause(c);
    if (uv_getaddrinfo(&c->t->loop, &r->req, push_resolved, name, NULL, &hints) != 0) {
        iy_free(r);
        conn_http_error(c, IY_EINVAL, "cannot resolve the push endpoint's host");
        dbq_job_unref(&a->j);
    }
}

/* An http(s) URL of at most IY_PUSH_URL_MAX bytes with a host; 0 or answered. */
static int check_push_url(conn *c, const char *url)
{
    if (strlen(url) > IY_PUSH_URL_MAX) {
        conn_http_error(c, IY_ETOOBIG, "push URLs are at most 2048 bytes");
        return IY_ETOOBIG;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    int ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
             curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
             (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    if (!ok) {
        conn_http_error(c, IY_EINVAL, "push endpoints must be http(s) URLs");
        return IY_EINVAL;
    }
    return 0;
}

static void push_sub_create(conn *c, const http_request *req)
{
    json_t *o = parse_body(c, req);
    if (!o) return;
    api_job *a = job_new(c, req, nothing_store, 1);
    iy_push_sub *sub = a->sub = iy_calloc(1, sizeof *sub);
    char kind[16];
    if (get_str(c, o, "kind", kind, sizeof kind, 1) < 0) goto out;
    if (!strcmp(kind, "webhook")) {
        sub->kind = IY_PUSH_WEBHOOK;
        if (get_str(c, o, "url", sub->url, sizeof sub->url, 1) < 0 || check_push_url(c, sub->url)) goto out;
        auth_random_hex(sub->secret, 32);
    } else if (!strcmp(kind, "webpush")) {
        sub->kind = IY_PUSH_WEBPUSH;
        if (get_str(c, o, "endpoint", sub->url, sizeof sub->url, 1) < 0 || check_push_url(c, sub->url)) goto out;
        json_t *keys = json_object_get(o, "keys");
        json_t *pk = json_object_get(keys, "p256dh"), *au = json_object_get(keys, "auth");
        uint8_t raw[80];
        size_t n = 0;
        if (!json_is_object(keys) || !json_is_string(pk) || !json_is_string(au) ||
            json_string_length(pk) >= sizeof sub->p256dh || json_string_length(au) >= sizeof sub->auth ||
            b64url_decode(json_string_value(pk), json_string_length(pk), raw, sizeof raw, &n) || n != 65 ||
            raw[0] != 4 ||
            b64url_decode(json_string_value(au), json_string_length(au), raw, sizeof raw, &n) || n != 16) {
            conn_http_error(c, IY_EINVAL, "keys must hold p256dh (a P-256 public key) and auth (16 bytes), base64url");
            goto out;
        }
        memcpy(sub->p256dh, json_string_value(pk), json_string_length(pk) + 1);
        memcpy(sub->auth, json_string_value(au), json_string_length(au) + 1);
        /* A trial encryption checks the key is a point on P-256 (one ECDH,
         * ~0.1 ms; subscriptions are rare). */
        iy_buf trial = { 0 };
        int bad = webpush_encrypt(sub->p256dh, sub->auth, (const uint8_t *)"{}", 2, &trial) != 0;
        iy_buf_free(&trial);
        if (bad) {
            conn_http_error(c, IY_EINVAL, "keys.p256dh is not a P-256 public key");
            goto out;
        }
    } else {
        conn_http_error(c, IY_EINVAL, "kind must be webhook or webpush");
        goto out;
    }
    json_decref(o);
    a->then = push_sub_authed;
    submit(c, a);
    return;
out:
    json_decref(o);
    dbq_job_unref(&a->j);
}

static void push_sub_delete_store(store *s, api_job *a)
{
    int rc = store_push_sub_delete(s, a->user, a->id);
    if (rc == IY_ENOTFOUND) fail(a, IY_ENOTFOUND, "no such push subscription");
    else if (rc) fail(a, IY_EIO, "storage error");
    else a->status = 204;
}

static void vapid_key(conn *c)
{
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"public_key\":");
    jw_cstr(&b, vapid_public_key(c->t->srv->vapid));
    iy_buf_putc(&b, '}');
    conn_http_respond(c, 200, "application/json", b.data, b.len);
    iy_buf_free(&b);
}

/* ---- routing ---- */

/* A numeric query parameter in [lo, hi]; *present tells whether it was given.
 * 0, or answers 400 and returns IY_EINVAL. */
static int query_num(conn *c, const http_request *req, const char *name, uint64_t lo, uint64_t hi,
                     uint64_t *out, int *present)
{
    char v[32];
    int rc = http_query_get(req->query, name, v, sizeof v);
    *present = rc == 1;
    if (rc == 0) return 0;
    char *end = NULL;
    unsigned long long x = 0;
    if (rc == 1 && v[0] >= '0' && v[0] <= '9') x = strtoull(v, &end, 10);
    if (rc != 1 || !end || *end || x < lo || x > hi) {
        char m[128];
        snprintf(m, sizeof m, "%s must be an integer from %llu to %llu", name, (unsigned long long)lo,
                 (unsigned long long)hi);
        conn_http_error(c, IY_EINVAL, m);
        return IY_EINVAL;
    }
    *out = x;
    return 0;
}

static void discovery(conn *c, const http_request *req)
{
    char url[600];
    ws_url_for(c, req, url, sizeof url);
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"ws_url\":");
    jw_cstr(&b, url);
    iy_buf_appendf(&b, ",\"node\":\"%s:%d\"}", c->t->srv->cfg.listen_host, c->t->srv->cfg.listen_port);
    conn_http_respond(c, 200, "application/json", b.data, b.len);
    iy_buf_free(&b);
}

static void metrics_page(conn *c)
{
    iy_buf b = { 0 };
    metrics_set(M_BACKLOG, (int64_t)dbq_backlog(c->t->srv->dbq));
    metrics_render(&b);
    conn_http_respond(c, 200, "text/plain; version=0.0.4", b.data, b.len);
    iy_buf_free(&b);
}

static void simple_job(conn *c, const http_request *req, api_handler h, uint64_t id)
{
    api_job *a = job_new(c, req, h, 1);
    a->id = id;
    submit(c, a);
}

static void me_patch(conn *c, const http_request *req)
{
    json_t *o = parse_body(c, req);
    if (!o) return;
    api_job *a = job_new(c, req, me_store, 1);
    int rc = get_str(c, o, "display_name", a->display_name, sizeof a->display_name, 0);
    json_decref(o);
    if (rc < 0 || (rc == 1 && check_display_name(c, a->display_name))) {
        dbq_job_unref(&a->j);
        return;
    }
    a->has_display_name = rc == 1;
    submit(c, a);
}

static void user_lookup(conn *c, const http_request *req)
{
    api_job *a = job_new(c, req, user_get_store, 1);
    int rc = http_query_get(req->query, "username", a->username, sizeof a->username);
    if (rc != 1 || !a->username[0]) {
        conn_http_error(c, IY_EINVAL, "give ?username=NAME or /v1/users/{id}");
        dbq_job_unref(&a->j);
        return;
    }
    submit(c, a);
}

static void history(conn *c, const http_request *req, uint64_t channel)
{
    uint64_t before = 0, after = 0, limit = IY_PAGE_DEFAULT;
    int has_b = 0, has_a = 0, has_l = 0;
    if (query_num(c, req, "before_seq", 1, UINT64_MAX, &before, &has_b) ||
        query_num(c, req, "after_seq", 0, UINT64_MAX, &after, &has_a) ||
        query_num(c, req, "limit", 1, IY_PAGE_MAX, &limit, &has_l))
        return;
    if (has_b && has_a) {
        conn_http_error(c, IY_EINVAL, "give before_seq or after_seq, not both");
        return;
    }
    api_job *a = job_new(c, req, NULL, 1);
    a->j.read = history_read;
    a->id = channel;
    a->before = before;
    a->has_before = has_b;
    a->after = after;
    a->has_after = has_a;
    a->limit = (int)limit;
    submit_read(c, a);
}

static void sync_request(conn *c, const http_request *req)
{
    uint64_t after = 0, limit = IY_SYNC_DEFAULT, wait = 0;
    int p;
    if (query_num(c, req, "after", 0, UINT64_MAX, &after, &p) ||
        query_num(c, req, "limit", 1, IY_SYNC_MAX, &limit, &p) ||
        query_num(c, req, "wait", 0, IY_WAIT_MAX, &wait, &p))
        return;
    sync_submit(c, req, after, (int)limit, (int)wait);
}


void api_handle(conn *c, const http_request *req)
{
    iy_str seg[8];
    int n = http_path_split(req->path, seg, 8);
    int m = req->method;
    uint64_t id = 0;
    if (n < 0) { conn_http_error(c, IY_ENOTFOUND, "no such endpoint"); return; }

    if (n == 1 && iy_str_eq(seg[0], "healthz") && m == HTTP_GET) {
        conn_http_respond(c, 200, "text/plain", "ok\n", 3);
        return;
    }
    if (n == 1 && iy_str_eq(seg[0], "metrics") && m == HTTP_GET) { metrics_page(c); return; }
    if (n == 0 || !iy_str_eq(seg[0], "v1")) {
        if (m == HTTP_GET) static_serve(c, req->path);
        else conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
        return;
    }
    if (n < 2) { conn_http_error(c, IY_ENOTFOUND, "no such endpoint"); return; }

    iy_str r = seg[1];
    int has_id = n >= 3 && proto_parse_id(seg[2].ptr, seg[2].len, &id) == 0;
    if (n >= 3 && !has_id && !(iy_str_eq(r, "sessions") || iy_str_eq(r, "push"))) {
        conn_http_error(c, IY_ENOTFOUND, "no such resource");
        return;
    }
    if (iy_str_eq(r, "users")) {
        if (n == 2 && m == HTTP_POST) { signup(c, req); return; }
        if (n == 2 && m == HTTP_GET) { user_lookup(c, req); return; }
        if (n == 3 && m == HTTP_GET) { simple_job(c, req, user_get_store, id); return; }
        if (n == 4 && iy_str_eq(seg[3], "messages") && m == HTTP_POST) { send_message(c, req, id, 1); return; }
    } else if (iy_str_eq(r, "sessions")) {
        if (n == 2 && m == HTTP_POST) { login(c, req); return; }
        if (n == 3 && iy_str_eq(seg[2], "current") && m == HTTP_DELETE)
            { simple_job(c, req, logout_store, 0); return; }
    } else if (iy_str_eq(r, "me") && n == 2) {
        if (m == HTTP_GET) { simple_job(c, req, me_store, 0); return; }
        if (m == HTTP_PATCH) { me_patch(c, req); return; }
    } else if (iy_str_eq(r, "channels")) {
        if (n == 2 && m == HTTP_GET) { simple_job(c, req, channels_store, 0); return; }
        if (n == 3 && m == HTTP_GET) { simple_job(c, req, channel_get_store, id); return; }
        if (n == 4 && iy_str_eq(seg[3], "messages") && m == HTTP_GET) { history(c, req, id); return; }
        if (n == 4 && iy_str_eq(seg[3], "messages") && m == HTTP_POST) { send_message(c, req, id, 0); return; }
        if (n == 3 && m == HTTP_PATCH) { membership(c, req, id, IY_EV_RENAMED, 0); return; }
        if (n == 4 && iy_str_eq(seg[3], "members") && m == HTTP_POST) {
            membership(c, req, id, IY_EV_MEMBER_ADDED, 0);
            return;
        }
        if (n == 5 && iy_str_eq(seg[3], "members") && m == HTTP_DELETE) {
            uint64_t who;
            if (proto_parse_id(seg[4].ptr, seg[4].len, &who)) { conn_http_error(c, IY_ENOTFOUND, "no such user"); return; }
            membership(c, req, id, IY_EV_MEMBER_REMOVED, who);
            return;
        }
    } else if (iy_str_eq(r, "groups") && n == 2 && m == HTTP_POST) {
        { group_create(c, req); return; }
    } else if (iy_str_eq(r, "sync") && n == 2 && m == HTTP_GET) {
        { sync_request(c, req); return; }
    } else if (iy_str_eq(r, "discovery") && n == 2 && m == HTTP_GET) {
        { discovery(c, req); return; }
    } else if (iy_str_eq(r, "friends")) {
        if (n == 2 && m == HTTP_GET) { simple_job(c, req, friends_list_store, 0); return; }
        if (n == 3 && m == HTTP_PUT) { simple_job(c, req, friend_put_store, id); return; }
        if (n == 3 && m == HTTP_DELETE) { simple_job(c, req, friend_delete_store, id); return; }
    } else if (iy_str_eq(r, "presence") && n == 2 && m == HTTP_GET) {
        presence_query(c, req);
        return;
    } else if (iy_str_eq(r, "push")) {
        if (n == 3 && iy_str_eq(seg[2], "vapid") && m == HTTP_GET) { vapid_key(c); return; }
        if (n == 3 && iy_str_eq(seg[2], "subscriptions") && m == HTTP_POST) { push_sub_create(c, req); return; }
        if (n == 4 && iy_str_eq(seg[2], "subscriptions") && m == HTTP_DELETE) {
            uint64_t sid;
            if (proto_parse_id(seg[3].ptr, seg[3].len, &sid)) { conn_http_error(c, IY_ENOTFOUND, "no such push subscription"); return; }
            simple_job(c, req, push_sub_delete_store, sid);
            return;
        }
    }
    conn_http_error(c, IY_ENOTFOUND, "no such endpoint");
}
