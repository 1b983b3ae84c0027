/* push.c — push subscriptions and the VAPID key.
 *
 * POST: validate the body, authenticate, then (unless --push-allow-private)
 * resolve the endpoint's host on libuv's thread pool and refuse it if any
 * address is loopback/private/link-local, then store it. The push worker
 * checks the address again when it connects (DNS may change). */
#include "api_int.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../chat/auth.h"
#include "../codec/jsonw.h"
#include "../push/pushd.h"
#include "../push/webpush.h"
#include <curl/curl.h>
#include <string.h>

typedef struct push_job {
    api_job a;
    iy_push_sub *sub;           /* being created */
} push_job;

static void push_free(api_job *a) { iy_free(((push_job *)a)->sub); }

static void push_sub_store(store *s, api_job *base)
{
    push_job *a = (push_job *)base;
    a->sub->user = base->user;
    memcpy(a->sub->device, base->device, sizeof a->sub->device);
    memcpy(a->sub->session, base->token, sizeof a->sub->session);   /* it ends with the session */
    int rc = store_push_sub_create(s, a->sub);
    if (rc == IY_ETOOBIG) { api_fail(base, IY_ETOOBIG, "at most 32 push subscriptions per user"); return; }
    if (rc) { api_fail(base, rc, "storage error"); return; }
    base->status = 201;
    iy_buf *b = &base->body;
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
    push_job *a;
} resolve_req;

static void push_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    resolve_req *r = req->data;
    push_job *a = r->a;
    conn *c = iothread_conn(a->a.t, a->a.conn_id);
    int ok = status == 0 && res;
    for (struct addrinfo *ai = res; ok && ai; ai = ai->ai_next) ok = push_address_public(ai->ai_addr);
    uv_freeaddrinfo(res);
    iy_free(r);
    if (!c || c->closing) { api_job_drop(&a->a); return; }
    if (!ok) {
        conn_http_error(c, IY_EINVAL, status == 0 ? "push endpoints may not be on loopback, private or link-local addresses"
                                                  : "cannot resolve the push endpoint's host");
        api_job_drop(&a->a);
        return;
    }
    a->a.handler = push_sub_store;
    api_submit(c, &a->a);
}

static void push_sub_authed(conn *c, api_job *base)
{
    push_job *a = (push_job *)base;
    if (base->svc->cfg.push_allow_private) {
        base->handler = push_sub_store;
        api_submit(c, base);
        return;
    }
    char *host = NULL;
    CURLU *u = curl_url();
    curl_url_set(u, CURLUPART_URL, a->sub->url, 0);
    curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_url_cleanup(u);
    if (!host) {
        conn_http_error(c, IY_EINVAL, "the push endpoint has no host");
        api_job_drop(base);
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
        api_job_drop(base);
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

void push_sub_create(conn *c, const http_request *req)
{
    json_t *o = api_parse_body(c, req);
    if (!o) return;
    push_job *a = api_job_new(c, req, sizeof *a, NULL, 1, push_free);
    iy_push_sub *sub = a->sub = iy_calloc(1, sizeof *sub);
    char kind[16];
    if (api_get_str(c, o, "kind", kind, sizeof kind, 1) < 0) goto out;
    if (!strcmp(kind, "webhook")) {
        sub->kind = IY_PUSH_WEBHOOK;
        if (api_get_str(c, o, "url", sub->url, sizeof sub->url, 1) < 0 || check_push_url(c, sub->url)) goto out;
        auth_random_hex(sub->secret, 32);
    } else if (!strcmp(kind, "webpush")) {
        sub->kind = IY_PUSH_WEBPUSH;
        if (api_get_str(c, o, "endpoint", sub->url, sizeof sub->url, 1) < 0 || check_push_url(c, sub->url)) goto out;
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
    a->a.then = push_sub_authed;
    api_submit(c, &a->a);
    return;
out:
    json_decref(o);
    api_job_drop(&a->a);
}

static void push_sub_delete_store(store *s, api_job *a)
{
    int rc = store_push_sub_delete(s, a->user, a->id);
    if (rc == IY_ENOTFOUND) api_fail(a, IY_ENOTFOUND, "no such push subscription");
    else if (rc) api_fail(a, rc, "storage error");
    else a->status = 204;
}

void push_sub_delete(conn *c, const http_request *req, uint64_t id)
{
    api_job *a = api_job_new(c, req, sizeof *a, push_sub_delete_store, 1, NULL);
    a->id = id;
    api_submit(c, a);
}

void push_vapid_key(conn *c)
{
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "{\"public_key\":");
    jw_cstr(&b, vapid_public_key(svc_of(c)->vapid));
    iy_buf_putc(&b, '}');
    conn_http_respond(c, 200, "application/json", b.data, b.len);
    iy_buf_free(&b);
}

