/* api_int.h — what the files of the HTTP API share.
 *
 *   api.c       routing, the job plumbing below, body and query helpers,
 *               discovery, health, metrics
 *   account.c   signup, login, logout, me, users
 *   channels.c  channels, groups, membership, history, sending
 *   sync.c      sync and long polling
 *   friends.c   friends and presence queries
 *   push.c      push subscriptions and the VAPID key
 *   search.c    message search
 *   uploads.c   attachments: uploads streamed to files, downloads streamed from them
 *   static.c    the web client's files
 *
 * A request is parsed and validated on its I/O thread. Anything that needs
 * the store becomes an api_job (or a bigger struct starting with one, one
 * per endpoint) whose handler runs on the storage thread — store work only,
 * after authenticating the bearer token — and leaves a status, a JSON body
 * and its results in the job; `then`, back on the I/O thread, finishes:
 * publishes notices, chains the next stage, or writes the answer. */
#ifndef IY_API_INT_H
#define IY_API_INT_H
#include <jansson.h>
#include "api.h"
#include "../chat/service.h"
#include "../store/store.h"

typedef struct api_job api_job;
typedef void (*api_handler)(store *s, api_job *a);
typedef void (*api_then)(conn *c, api_job *a);

struct api_job {
    dbq_job j;
    uint64_t conn_id;
    iothread *t;
    service *svc;
    api_handler handler;        /* storage thread; NULL: nothing (or j.read on a reader) */
    api_then then;              /* I/O thread, owns the job; NULL: write the answer */
    int need_auth;
    uint8_t token[32];          /* SHA-256 of the bearer token */
    uint64_t user;              /* the caller, after auth */
    char device[IY_DEVICE_MAX + 1];
    uint64_t id;                /* the id in the path */
    int status;
    int64_t retry_ms;           /* > 0: the answer carries Retry-After (api_fail_retry) */
    iy_buf body;
    void (*free_fn)(api_job *a);  /* frees what a bigger job struct owns; NULL: nothing */
};

/* A job of `size` bytes (a struct starting with api_job) for c's request;
 * with need_auth, the bearer token of req is hashed for the handler's check.
 * free_fn frees what the bigger struct owns (NULL: nothing), then the job. */
void *api_job_new(conn *c, const http_request *req, size_t size, api_handler h, int need_auth,
                  void (*free_fn)(api_job *a));

/* Submits a (re)initialised job to the storage thread; answers 503 itself
 * when the store is stopping. */
void api_submit(conn *c, api_job *a);

/* As api_submit, to a reader thread (a->j.read set). */
void api_submit_read(conn *c, api_job *a);

/* Frees a job that never ran (or is finished). */
void api_job_drop(api_job *a);

/* The answer of a failed handler: status and {"error":...} body. */
void api_fail(api_job *a, int err, const char *message);
/* The same with Retry-After (rate_limited, unavailable). */
void api_fail_retry(api_job *a, int err, const char *message, int64_t retry_ms);

/* {"user":...} with status. */
void api_ok_user(api_job *a, int status, const iy_user *u);

/* Why an Authorization header value cannot carry a session token (missing,
 * or not "Bearer <token>"), for the 401's message; NULL when it can. */
const char *api_auth_problem(iy_str v);

/* The JSON object of the request body, or NULL (400 answered). */
json_t *api_parse_body(conn *c, const http_request *req);

/* A string field: 1 (copied), 0 (absent or null), or < 0 (400 answered). */
int api_get_str(conn *c, json_t *o, const char *key, char *out, size_t cap, int required);

/* A numeric query parameter in [lo, hi]; *present tells whether it was
 * given. 0, or answers 400 and returns IY_EINVAL. */
int api_query_num(conn *c, const http_request *req, const char *name, uint64_t lo, uint64_t hi,
                  uint64_t *out, int *present);

int api_valid_username(const char *u);
int api_check_display_name(conn *c, const char *s);    /* 0 or answered */

/* The WebSocket URL of this node (--public-url, else the Host header). */
void api_ws_url(conn *c, const http_request *req, char *out, size_t n);

/* Where a new client should go: in a cluster the live node with the most
 * spare capacity (registry.h), else this node; its ws_url and name. */
void api_best_node(conn *c, const http_request *req, char *url, size_t n, char *node, size_t nn);

/* {"messages":[...]} members of l. */
void api_write_messages(iy_buf *b, const iy_msg_list *l);

/* The endpoints (one function per method and path; the router is api.c). */
void account_signup(conn *c, const http_request *req);
void account_login(conn *c, const http_request *req);
void account_logout(conn *c, const http_request *req);
void account_me(conn *c, const http_request *req, int patch);
void account_user_get(conn *c, const http_request *req, uint64_t id);
void account_user_lookup(conn *c, const http_request *req);
void account_sessions(conn *c, const http_request *req);
void account_session_revoke(conn *c, const http_request *req, const char *id, size_t n);
void account_password(conn *c, const http_request *req);
void account_delete(conn *c, const http_request *req);
void channels_list(conn *c, const http_request *req);
void channels_get(conn *c, const http_request *req, uint64_t id);
void channels_group_create(conn *c, const http_request *req);
void channels_history(conn *c, const http_request *req, uint64_t channel);
void channels_send(conn *c, const http_request *req, uint64_t id, int to_user);
void channels_membership(conn *c, const http_request *req, uint64_t channel, int event, uint64_t subject);
/* PATCH /v1/messages/{id} (EDITED), DELETE (DELETED), PUT and DELETE
 * /v1/messages/{id}/reactions/{emoji} (REACTED, UNREACTED: emoji checked
 * by proto_check_emoji): an event of the message's channel. */
void channels_change(conn *c, const http_request *req, uint64_t id, int event, const char *emoji);
void sync_request(conn *c, const http_request *req);
void search_request(conn *c, const http_request *req);   /* search.c */
/* uploads.c: POST /v1/uploads (its head, then the request once the body
 * streamed in), GET /v1/attachments/{id} and /thumb. */
void uploads_head(conn *c, const http_request *head);
void uploads_complete(conn *c, const http_request *req);
void uploads_download(conn *c, const http_request *req, uint64_t id, int thumb);
void friends_list(conn *c, const http_request *req);
void friends_put(conn *c, const http_request *req, uint64_t id);
void friends_delete(conn *c, const http_request *req, uint64_t id);
void friends_presence(conn *c, const http_request *req);
/* Sets a's side toward b from the rule (put: a request or an acceptance;
 * else the end of either), with the store's compare-and-set, retried: 0 and
 * *state (a's side afterwards), or an error (storage thread). */
int friends_change(store *s, uint64_t a, uint64_t b, int put, int *state);
void blocks_list(conn *c, const http_request *req);
void channels_mute(conn *c, const http_request *req, uint64_t id, int on);
void blocks_put(conn *c, const http_request *req, uint64_t id);
void blocks_delete(conn *c, const http_request *req, uint64_t id);
void push_sub_create(conn *c, const http_request *req);
void push_sub_delete(conn *c, const http_request *req, uint64_t id);
void push_vapid_key(conn *c);
void static_serve(conn *c, iy_str path);
/* 1 if path is one of the web client's files (static_serve answers 200). */
int static_exists(iy_str path);
/* GET /v1/openapi.json, /v1/asyncapi.json: name is "/openapi.json" ... */
void static_api_doc(conn *c, const char *name);

#endif
