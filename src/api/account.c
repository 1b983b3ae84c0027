/* account.c — signup, login, logout, me and user lookups.
 *
 * Login chains three stages: look the user up (storage thread), verify the
 * password (Argon2id on libuv's thread pool), create the session (storage
 * thread; the new token goes into the token cache, chat/tokens.h). Logout
 * deletes the session, then — on the storage thread, right after the delete
 * committed — forgets the token in the cache and revokes it on the bus, so
 * every socket of the session closes: one authenticated before the delete is
 * registered and gets the revoke, one after it fails its second read
 * (chat/chat.c). Session revocation, password change and account deletion
 * revoke each session they delete the same way (session_gone).
 *
 * Rate limits (chat/limiter.h), checked before any work: logins and
 * signups per client address, failed logins per account (a growing
 * back-off that a success clears), and a bounded queue of password hashes
 * (`unavailable` when full, so that a flood cannot queue everyone's login
 * behind it). */
#include "api_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../chat/auth.h"
#include "../chat/limiter.h"
#include "../chat/tokens.h"
#include "../bus/bus_wire.h"
#include "../codec/jsonw.h"
#include "../codec/proto.h"
#include <string.h>

typedef struct account_job {
    api_job a;
    char username[256];                  /* validated to IY_USERNAME_MAX by the handlers */
    char display_name[IY_DISPLAY_MAX + 1];
    int has_display_name;
    char *password;
    size_t password_len;
    char pwhash[256];
    char ws_url[600];
    char new_token[44];
    uint64_t client;                     /* the client's address (conn_client) */
    iy_user u;
    /* password change, session revocation: */
    char *new_password;
    size_t new_password_len;
    uint8_t (*revoked)[32];              /* sessions deleted, to revoke on the bus */
    size_t nrevoked;
    char session_id[17];                 /* DELETE /v1/sessions/{id} */
} account_job;

static void account_free(api_job *a)
{
    account_job *x = (account_job *)a;
    if (x->password) {
        memset(x->password, 0, x->password_len);
        iy_free(x->password);
    }
    if (x->new_password) {
        memset(x->new_password, 0, x->new_password_len);
        iy_free(x->new_password);
    }
    iy_free(x->revoked);
}

static account_job *account_job_new(conn *c, const http_request *req, api_handler h, int need_auth)
{
    return api_job_new(c, req, sizeof(account_job), h, need_auth, account_free);
}

/* 0, or answers 429 (per-address limit l) or 503 (the hash queue is full). */
static int admit(conn *c, const http_request *req, limiter *l, const char *what)
{
    if (!svc_of(c)->limits) return 0;
    int64_t wait = limiter_take(l, conn_client(c, req), (int64_t)now_ms());
    char m[96];
    if (wait) {
        snprintf(m, sizeof m, "too many %s from this address; retry later", what);
        conn_http_error_retry(c, IY_ERATE, m, wait);
        return IY_ERATE;
    }
    if (auth_pw_busy()) {
        conn_http_error_retry(c, IY_EUNAVAIL, "the server is busy checking passwords; retry in a second", 1000);
        return IY_EUNAVAIL;
    }
    return 0;
}

/* ---- signup ---- */

static void signup_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = store_user_create(s, x->username, x->has_display_name ? x->display_name : x->username,
                               x->pwhash, &x->u);
    if (rc == IY_ECONFLICT) api_fail(a, IY_ECONFLICT, "username is taken");
    else if (rc) api_fail(a, rc, "storage error");
    else {
        api_ok_user(a, 201, &x->u);
        iy_log_info("signup: user %llu (%s)", (unsigned long long)x->u.id, x->u.username);
    }
}

static void signup_hashed(void *ctx, int err, const char *encoded)
{
    account_job *x = ctx;
    conn *c = iothread_conn(x->a.t, x->a.conn_id);
    if (!c || c->closing) { api_job_drop(&x->a); return; }
    if (err) {
        conn_http_error(c, IY_EIO, "password hashing failed");
        api_job_drop(&x->a);
        return;
    }
    snprintf(x->pwhash, sizeof x->pwhash, "%s", encoded);
    api_submit(c, &x->a);
}

void account_signup(conn *c, const http_request *req)
{
    if (admit(c, req, svc_of(c)->limits ? svc_of(c)->limits->signup_addr : NULL, "signups")) return;
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    account_job *x = account_job_new(c, req, signup_store, 0);
    char pw[IY_PASSWORD_MAX + 1];
    int rc;
    json_t *un = json_object_get(o, "username");
    if (json_is_string(un) && json_string_length(un) > IY_USERNAME_MAX) {
        conn_http_error(c, IY_EINVAL, "username must be 3 to 32 of a-z 0-9 _ . -");
        goto out;
    }
    if ((rc = api_get_str(c, o, "username", x->username, sizeof x->username, 1)) < 0) goto out;
    if (!api_valid_username(x->username)) {
        conn_http_error(c, IY_EINVAL, "username must be 3 to 32 of a-z 0-9 _ . -");
        goto out;
    }
    if ((rc = api_get_str(c, o, "password", pw, sizeof pw, 1)) < 0) goto out;
    if (strlen(pw) < IY_PASSWORD_MIN) {
        conn_http_error(c, IY_EINVAL, "password must be at least 8 characters");
        goto out;
    }
    if ((rc = api_get_str(c, o, "display_name", x->display_name, sizeof x->display_name, 0)) < 0) goto out;
    x->has_display_name = rc == 1 && x->display_name[0];
    if (x->has_display_name && api_check_display_name(c, x->display_name)) goto out;
    json_decref(o);
    c->http_busy = 1;
    conn_pause(c);
    auth_hash_password(c->t, pw, strlen(pw), signup_hashed, x);
    memset(pw, 0, sizeof pw);
    return;
out:
    memset(pw, 0, sizeof pw);
    json_decref(o);
    api_job_drop(&x->a);
}

/* ---- login: look up, verify (thread pool), create the session ---- */

static void login_session_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = store_session_create(s, a->token, x->u.id, a->device);
    if (rc) {
        api_fail(a, rc, "storage error");
        return;
    }
    /* The new token's first uses (the client's WebSocket auth) need no
     * storage round trip. */
    tokens_put(a->svc->tokens, a->token, x->u.id, a->device, tokens_epoch(a->svc->tokens, a->token));
    iy_log_info("login: user %llu, device %s", (unsigned long long)x->u.id, a->device);
    a->status = 201;
    iy_buf *b = &a->body;
    iy_buf_append_str(b, "{\"token\":");
    jw_cstr(b, x->new_token);
    iy_buf_append_str(b, ",\"user\":");
    proto_write_user(b, &x->u);
    iy_buf_append_str(b, ",\"device\":");
    jw_cstr(b, a->device);
    iy_buf_append_str(b, ",\"ws_url\":");
    jw_cstr(b, x->ws_url);
    iy_buf_putc(b, '}');
}

static void login_verified(void *ctx, int ok)
{
    account_job *x = ctx;
    conn *c = iothread_conn(x->a.t, x->a.conn_id);
    if (!c || c->closing) { api_job_drop(&x->a); return; }
    service_limits *lim = x->a.svc->limits;
    if (!ok) {
        char peer[48];
        net_addr_text(x->client, peer, sizeof peer);
        /* Only a well-formed name reaches the log: no control characters from clients. */
        if (iy_log_allow(&iy_log_auth_budget))
            iy_log_warn("login failed for %s from %s", api_valid_username(x->username) ? x->username : "(a malformed username)",
               peer);
        if (lim) limiter_fail(lim->login_user, limiter_key_str(x->username), (int64_t)now_ms());
        conn_http_error(c, IY_EUNAUTH, "wrong username or password");
        api_job_drop(&x->a);
        return;
    }
    if (lim) limiter_clear(lim->login_user, limiter_key_str(x->username));
    auth_token_new(x->new_token, x->a.token);
    x->a.handler = login_session_store;
    api_submit(c, &x->a);
}

static void login_lookup_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = store_user_find(s, x->username, &x->u, x->pwhash);
    if (rc == IY_ENOTFOUND || rc == IY_EINVAL) x->pwhash[0] = '\0'; /* verified against a dummy: same time */
    else if (rc) api_fail(a, rc, "storage error");
}

static void login_looked_up(conn *c, api_job *a)
{
    account_job *x = (account_job *)a;
    auth_verify_password(c->t, x->pwhash, x->password, x->password_len, login_verified, x);
    /* the conn stays paused and busy until the answer */
    c->http_busy = 1;
    conn_pause(c);
}

void account_login(conn *c, const http_request *req)
{
    service_limits *lim = svc_of(c)->limits;
    if (admit(c, req, lim ? lim->login_addr : NULL, "logins")) return;
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    account_job *x = account_job_new(c, req, login_lookup_store, 0);
    x->client = conn_client(c, req);
    char pw[IY_PASSWORD_MAX + 1];
    int rc;
    if ((rc = api_get_str(c, o, "username", x->username, sizeof x->username, 1)) < 0) goto out;
    int64_t locked = lim ? limiter_wait(lim->login_user, limiter_key_str(x->username), (int64_t)now_ms()) : 0;
    if (locked) {
        conn_http_error_retry(c, IY_ERATE, "too many failed logins for this account; retry later", locked);
        goto out;
    }
    if ((rc = api_get_str(c, o, "password", pw, sizeof pw, 1)) < 0) goto out;
    if ((rc = api_get_str(c, o, "device", x->a.device, sizeof x->a.device, 0)) < 0) goto out;
    if (rc == 0 || !x->a.device[0]) {
        memcpy(x->a.device, "d-", 2);
        auth_random_hex(x->a.device + 2, 8);
    }
    x->password_len = strlen(pw);
    x->password = iy_strndup(pw, x->password_len);
    char node[BUS_NODE_NAME_MAX + 1];
    api_best_node(c, req, x->ws_url, sizeof x->ws_url, node, sizeof node);
    x->a.then = login_looked_up;
    json_decref(o);
    memset(pw, 0, sizeof pw);
    api_submit(c, &x->a);
    return;
out:
    memset(pw, 0, sizeof pw);
    json_decref(o);
    api_job_drop(&x->a);
}

/* ---- logout ---- */

/* Storage thread, right after the store deleted a session: no node accepts
 * its token from now on — this node's cache forgets it at once, the other
 * nodes' when the revocation reaches them (iyagi.revoke), and the session's
 * sockets everywhere close. Done here rather than when the answer goes out,
 * so that a client that hangs up first still has its session revoked. */
static void session_gone(api_job *a, uint64_t user, const uint8_t hash[32])
{
    tokens_forget(a->svc->tokens, hash);
    bus_revoke(a->svc->bus, user, hash);
}

static void logout_store(store *s, api_job *a)
{
    int rc = store_session_delete(s, a->token);
    if (rc == 0 || rc == IY_ENOTFOUND) session_gone(a, a->user, a->token);
    if (rc) { api_fail(a, rc == IY_ENOTFOUND ? IY_EUNAUTH : rc, "storage error"); return; }
    iy_log_info("logout: user %llu, device %s", (unsigned long long)a->user, a->device);
    a->status = 204;
}

static void logout_done(conn *c, api_job *a)
{
    conn_http_respond(c, 204, NULL, "", 0);
    api_job_drop(a);
}

void account_logout(conn *c, const http_request *req)
{
    api_job *a = api_job_new(c, req, sizeof *a, logout_store, 1, NULL);
    a->then = logout_done;
    api_submit(c, a);
}

/* ---- me, users ---- */

static void me_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = 0;
    if (x->has_display_name) rc = store_user_set_display_name(s, a->user, x->display_name);
    if (!rc) rc = store_user_get(s, a->user, &x->u);
    if (rc) api_fail(a, rc, rc == IY_ENOTFOUND ? "no such user" : "storage error");
    else api_ok_user(a, 200, &x->u);
}

void account_me(conn *c, const http_request *req, int patch)
{
    account_job *x = account_job_new(c, req, me_store, 1);
    if (patch) {
        json_t *o = api_parse_body(c, req);
        if (!o) { api_job_drop(&x->a); return; }
        int rc = api_get_str(c, o, "display_name", x->display_name, sizeof x->display_name, 0);
        json_decref(o);
        if (rc < 0 || (rc == 1 && api_check_display_name(c, x->display_name))) {
            api_job_drop(&x->a);
            return;
        }
        x->has_display_name = rc == 1;
    }
    api_submit(c, &x->a);
}

static void user_get_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = x->username[0] ? store_user_find(s, x->username, &x->u, NULL) : store_user_get(s, a->id, &x->u);
    if (rc == IY_ENOTFOUND || rc == IY_EINVAL) api_fail(a, IY_ENOTFOUND, "no such user");
    else if (rc) api_fail(a, rc, "storage error");
    else api_ok_user(a, 200, &x->u);
}

void account_user_get(conn *c, const http_request *req, uint64_t id)
{
    account_job *x = account_job_new(c, req, user_get_store, 1);
    x->a.id = id;
    api_submit(c, &x->a);
}

void account_user_lookup(conn *c, const http_request *req)
{
    account_job *x = account_job_new(c, req, user_get_store, 1);
    int rc = http_query_get(req->query, "username", x->username, sizeof x->username);
    if (rc != 1 || !x->username[0]) {
        conn_http_error(c, IY_EINVAL, "give ?username=NAME or /v1/users/{id}");
        api_job_drop(&x->a);
        return;
    }
    api_submit(c, &x->a);
}

/* ---- sessions: list, revoke one ----
 * A session's id is the first 8 bytes of its token's SHA-256, in hex: it
 * names the session to its own user and says nothing of the token. */

static void session_id_hex(char out[17], const uint8_t hash[32])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hx[hash[i] >> 4];
        out[2 * i + 1] = hx[hash[i] & 15];
    }
    out[16] = '\0';
}

static void sessions_list_store(store *s, api_job *a)
{
    iy_session_info *l;
    size_t n;
    int rc = store_session_list(s, a->user, &l, &n);
    if (rc) { api_fail(a, rc, "storage error"); return; }
    iy_buf *b = &a->body;
    iy_buf_append_str(b, "{\"sessions\":[");
    for (size_t i = 0; i < n; i++) {
        char id[17];
        session_id_hex(id, l[i].hash);
        if (i) iy_buf_putc(b, ',');
        iy_buf_append_str(b, "{\"id\":");
        jw_cstr(b, id);
        iy_buf_append_str(b, ",\"device\":");
        jw_cstr(b, l[i].device);
        iy_buf_append_str(b, ",\"created_at\":");
        jw_i64(b, l[i].created_ms);
        iy_buf_append_str(b, memcmp(l[i].hash, a->token, 32) == 0 ? ",\"current\":true}" : ",\"current\":false}");
    }
    iy_buf_append_str(b, "]}");
    iy_free(l);
}

void account_sessions(conn *c, const http_request *req)
{
    api_submit(c, api_job_new(c, req, sizeof(account_job), sessions_list_store, 1, account_free));
}

/* Deletes the user's sessions that `keep` says go (each with its push
 * subscriptions), recording them in x->revoked. 0, or an error. */
static int sessions_delete(store *s, account_job *x, int (*keep)(const account_job *, const iy_session_info *))
{
    iy_session_info *l;
    size_t n;
    int rc = store_session_list(s, x->a.user, &l, &n);
    if (rc) return rc;
    x->revoked = iy_calloc(n ? n : 1, sizeof *x->revoked);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (keep(x, &l[i])) continue;
        rc = store_session_delete(s, l[i].hash);
        if (rc == IY_ENOTFOUND) rc = 0;   /* gone meanwhile (its own logout) */
        else if (rc == 0) {
            memcpy(x->revoked[x->nrevoked++], l[i].hash, 32);
            session_gone(&x->a, x->a.user, l[i].hash);
        }
    }
    iy_free(l);
    return rc;
}

/* Back on the I/O thread: the deleted sessions were revoked as they went
 * (session_gone); answer. */
static void sessions_revoked(conn *c, api_job *a)
{
    conn_http_respond(c, 204, NULL, "", 0);
    api_job_drop(a);
}

static int keep_unless_named(const account_job *x, const iy_session_info *si)
{
    char id[17];
    session_id_hex(id, si->hash);
    return strcmp(id, x->session_id) != 0;
}

static void session_revoke_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = sessions_delete(s, x, keep_unless_named);
    if (rc) api_fail(a, rc, "storage error");
    else if (!x->nrevoked) api_fail(a, IY_ENOTFOUND, "no such session");
    else iy_log_info("session revoked: user %llu, session %s", (unsigned long long)a->user, x->session_id);
}

void account_session_revoke(conn *c, const http_request *req, const char *id, size_t n)
{
    int ok = n == 16;
    for (size_t i = 0; ok && i < n; i++) ok = (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f');
    if (!ok) { conn_http_error(c, IY_ENOTFOUND, "no such session"); return; }
    account_job *x = account_job_new(c, req, session_revoke_store, 1);
    memcpy(x->session_id, id, 16);
    x->session_id[16] = '\0';
    x->a.then = sessions_revoked;
    api_submit(c, &x->a);
}

/* ---- password change: look up, verify the old one, hash the new one,
 * store it and end every other session (their sockets close) ---- */

static int keep_current(const account_job *x, const iy_session_info *si)
{
    return memcmp(si->hash, x->a.token, 32) == 0;
}

static void password_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = store_user_set_password(s, a->user, x->pwhash);
    if (rc == 0) rc = sessions_delete(s, x, keep_current);
    if (rc) { api_fail(a, rc, "storage error"); return; }
    iy_log_info("password changed: user %llu; %zu other sessions ended", (unsigned long long)a->user, x->nrevoked);
}

static void password_hashed(void *ctx, int err, const char *encoded)
{
    account_job *x = ctx;
    conn *c = iothread_conn(x->a.t, x->a.conn_id);
    if (!c || c->closing) { api_job_drop(&x->a); return; }
    if (err) {
        conn_http_error(c, IY_EIO, "password hashing failed");
        api_job_drop(&x->a);
        return;
    }
    snprintf(x->pwhash, sizeof x->pwhash, "%s", encoded);
    x->a.handler = password_store;
    x->a.then = sessions_revoked;
    api_submit(c, &x->a);
}

static int keep_none(const account_job *x, const iy_session_info *si)
{
    (void)x;
    (void)si;
    return 0;
}

/* DELETE /v1/me, once the password is verified: every session (with its
 * push subscriptions; sockets close after), every friendship and request,
 * every block it made, then the user. Its messages stay in their
 * channels, its memberships too; its id no longer resolves to a user. */
static void delete_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    uint64_t *lists[4] = { NULL };
    size_t counts[4] = { 0 };
    int rc = sessions_delete(s, x, keep_none), st;
    if (rc == 0) rc = store_friend_list(s, a->user, &lists[0], &counts[0], &lists[1], &counts[1], &lists[2], &counts[2]);
    for (int l = 0; rc == 0 && l < 3; l++)
        for (size_t i = 0; rc == 0 && i < counts[l]; i++) {
            rc = friends_change(s, a->user, lists[l][i], 0, &st);
            if (rc == IY_ENOTFOUND) rc = 0;   /* that user went first */
        }
    if (rc == 0) rc = store_block_list(s, a->user, &lists[3], &counts[3]);
    for (size_t i = 0; rc == 0 && i < counts[3]; i++) {
        rc = store_block_set(s, a->user, lists[3][i], 0);
        if (rc == IY_ENOTFOUND) rc = 0;   /* that user went first */
    }
    if (rc == 0) rc = store_user_delete(s, a->user);
    for (int l = 0; l < 4; l++) iy_free(lists[l]);
    if (rc) { api_fail(a, rc, "storage error"); return; }
    iy_log_info("account deleted: user %llu (%zu sessions ended)", (unsigned long long)a->user, x->nrevoked);
}

static void password_verified(void *ctx, int ok)
{
    account_job *x = ctx;
    conn *c = iothread_conn(x->a.t, x->a.conn_id);
    if (!c || c->closing) { api_job_drop(&x->a); return; }
    service_limits *lim = x->a.svc->limits;
    if (!ok) {
        /* Guesses here count with failed logins: the same back-off. */
        if (lim) limiter_fail(lim->login_user, limiter_key_str(x->u.username), (int64_t)now_ms());
        conn_http_error(c, IY_EFORBIDDEN, "wrong password");
        api_job_drop(&x->a);
        return;
    }
    if (lim) limiter_clear(lim->login_user, limiter_key_str(x->u.username));
    if (x->new_password) {
        auth_hash_password(c->t, x->new_password, x->new_password_len, password_hashed, x);
        return;
    }
    x->a.handler = delete_store;   /* DELETE /v1/me */
    x->a.then = sessions_revoked;
    api_submit(c, &x->a);
}

static void password_lookup_store(store *s, api_job *a)
{
    account_job *x = (account_job *)a;
    int rc = store_user_get(s, a->user, &x->u);
    if (rc == 0) rc = store_user_find(s, x->u.username, &x->u, x->pwhash);
    if (rc) api_fail(a, rc, rc == IY_ENOTFOUND ? "no such user" : "storage error");
}

static void password_looked_up(conn *c, api_job *a)
{
    account_job *x = (account_job *)a;
    service_limits *lim = a->svc->limits;
    int64_t locked = lim ? limiter_wait(lim->login_user, limiter_key_str(x->u.username), (int64_t)now_ms()) : 0;
    if (locked) {
        conn_http_error_retry(c, IY_ERATE, "too many wrong passwords for this account; retry later", locked);
        api_job_drop(a);
        return;
    }
    auth_verify_password(c->t, x->pwhash, x->password, x->password_len, password_verified, x);
    c->http_busy = 1;
    conn_pause(c);
}

void account_password(conn *c, const http_request *req)
{
    service_limits *lim = svc_of(c)->limits;
    if (admit(c, req, lim ? lim->login_addr : NULL, "password changes")) return;
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    account_job *x = account_job_new(c, req, password_lookup_store, 1);
    char old[IY_PASSWORD_MAX + 1], pw[IY_PASSWORD_MAX + 1];
    old[0] = pw[0] = '\0';
    if (api_get_str(c, o, "old_password", old, sizeof old, 1) < 0) goto out;
    if (api_get_str(c, o, "new_password", pw, sizeof pw, 1) < 0) goto out;
    if (strlen(pw) < IY_PASSWORD_MIN) {
        conn_http_error(c, IY_EINVAL, "password must be at least 8 characters");
        goto out;
    }
    x->password_len = strlen(old);
    x->password = iy_strndup(old, x->password_len);
    x->new_password_len = strlen(pw);
    x->new_password = iy_strndup(pw, x->new_password_len);
    x->a.then = password_looked_up;
    memset(old, 0, sizeof old);
    memset(pw, 0, sizeof pw);
    json_decref(o);
    api_submit(c, &x->a);
    return;
out:
    memset(old, 0, sizeof old);
    memset(pw, 0, sizeof pw);
    json_decref(o);
    api_job_drop(&x->a);
}

void account_delete(conn *c, const http_request *req)
{
    service_limits *lim = svc_of(c)->limits;
    if (admit(c, req, lim ? lim->login_addr : NULL, "account changes")) return;
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    account_job *x = account_job_new(c, req, password_lookup_store, 1);
    char pw[IY_PASSWORD_MAX + 1];
    pw[0] = '\0';
    if (api_get_str(c, o, "password", pw, sizeof pw, 1) < 0) {
        memset(pw, 0, sizeof pw);
        json_decref(o);
        api_job_drop(&x->a);
        return;
    }
    x->password_len = strlen(pw);
    x->password = iy_strndup(pw, x->password_len);
    memset(pw, 0, sizeof pw);
    json_decref(o);
    x->a.then = password_looked_up;
    api_submit(c, &x->a);
}
