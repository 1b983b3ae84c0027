/* test_http.c — the HTTP request codec fed scripted bytes: every request
 * whole, one byte at a time and in odd-sized pieces. */
#include "t.h"
#include "codec/http.h"
#include "base/err.h"
#include <stdlib.h>
#include <string.h>

#define S(lit) (lit), (sizeof(lit) - 1)

static const size_t steps[] = { 0, 1, 3, 7 };   /* 0: the whole buffer in one feed */
#define NSTEPS (sizeof steps / sizeof steps[0])

/* Feeds s[0..len) step bytes at a time (all at once if step is 0) until a
 * request comes out or the parser fails. Returns the feed's result; *used is
 * the number of bytes consumed in all. */
static int run(http_parser *p, const char *s, size_t len, size_t step, size_t *used,
               const http_request **req)
{
    size_t off = 0;
    *req = NULL;
    while (off < len) {
        size_t n = step && step < len - off ? step : len - off, c = 0;
        int rc = http_parser_feed(p, s + off, n, &c, req);
        if (rc < 0) {
            *used = off;
            return rc;
        }
        off += c;
        if (*req) break;
        if (c != n) return 1000;   /* must consume everything when no request */
    }
    *used = off;
    return 0;
}

#define STR_IS(s, lit) CHECK_MEM((s).ptr, (s).len, lit)

static void test_get_query(void)
{
    static const char r[] =
        "GET /v1/channels/5/messages?before_seq=10&limit=20 HTTP/1.1\r\n"
        "Host: chat.example\r\n"
        "Authorization: Bearer abc123  \r\n"
        "Origin: https://chat.example\r\n"
        "Access-Control-Request-Method: PATCH\r\n"
        "X-Long-Header-Name-That-Is-Not-Ours: whatever\r\n"
        "\r\n";
    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 1 << 20);
        const http_request *q;
        size_t used;
        CHECK_EQ(run(p, S(r), steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof r - 1);
        CHECK(q != NULL);
        if (q) {
            CHECK_EQ(q->method, HTTP_GET);
            STR_IS(q->path, "/v1/channels/5/messages");
            STR_IS(q->query, "before_seq=10&limit=20");
            STR_IS(q->host, "chat.example");
            STR_IS(q->authorization, "Bearer abc123");
            STR_IS(q->origin, "https://chat.example");
            STR_IS(q->ac_request_method, "PATCH");     /* the longest header name we keep */
            CHECK_EQ(q->content_type.len, 0);
            CHECK(q->content_type.ptr != NULL);
            CHECK_EQ(q->body_len, 0);
            CHECK(q->body != NULL);
            CHECK_EQ(q->keep_alive, 1);
            CHECK_EQ(q->websocket, 0);
        }
        http_parser_free(p);
    }
    /* Every split into two feeds, cutting names and values anywhere. */
    for (size_t k = 1; k < sizeof r - 1; k++) {
        http_parser *p = http_parser_new(16384, 1 << 20);
        const http_request *q;
        size_t c1, c2;
        int rc1 = http_parser_feed(p, r, k, &c1, &q);
        int ok = rc1 == 0 && c1 == k && q == NULL;
        int rc2 = http_parser_feed(p, r + k, sizeof r - 1 - k, &c2, &q);
        ok = ok && rc2 == 0 && c2 == sizeof r - 1 - k && q &&
             iy_str_eq(q->authorization, "Bearer abc123") && iy_str_eq(q->host, "chat.example") &&
             iy_str_eq(q->query, "before_seq=10&limit=20");
        if (!ok) fprintf(stderr, "split at %zu failed\n", k);
        CHECK(ok);
        http_parser_free(p);
    }
}

static void test_header_split(void)
{
    /* Name and value cut in pieces over several feeds, with a duplicate
     * header (the last one wins). */
    static const char *const parts[] = {
        "GET / HTTP/1.1\r\nAuthori", "zation: Bea", "rer fir", "st\r\nCont", "ent-Type", ": text/pl",
        "ain\r\nauthorization:", " Bearer second\r", "\n\r", "\n",
    };
    http_parser *p = http_parser_new(16384, 1024);
    const http_request *q = NULL;
    size_t used;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t n = strlen(parts[i]);
        CHECK_EQ(http_parser_feed(p, parts[i], n, &used, &q), 0);
        CHECK_EQ(used, n);
        CHECK((q != NULL) == (i == sizeof parts / sizeof parts[0] - 1));
    }
    if (q) {
        STR_IS(q->authorization, "Bearer second");
        STR_IS(q->content_type, "text/plain");
        STR_IS(q->path, "/");
        CHECK_EQ(q->query.len, 0);
    }
    /* Feeding again before next returns the same request, consuming nothing. */
    const http_request *q2;
    CHECK_EQ(http_parser_feed(p, S("GET"), &used, &q2), 0);
    CHECK_EQ(used, 0);
    CHECK(q2 == q);
    http_parser_free(p);
}

static void test_post_body(void)
{
    static const char r[] =
        "POST /v1/users HTTP/1.1\r\n"
        "Host: a\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 27\r\n"
        "\r\n"
        "{\"username\":\"ann\",\"pw\":\"x\"}";
    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 1 << 20);
        const http_request *q;
        size_t used;
        CHECK_EQ(run(p, S(r), steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof r - 1);
        CHECK(q != NULL);
        if (q) {
            CHECK_EQ(q->method, HTTP_POST);
            STR_IS(q->path, "/v1/users");
            STR_IS(q->content_type, "application/json");
            CHECK_MEM(q->body, q->body_len, "{\"username\":\"ann\",\"pw\":\"x\"}");
        }
        http_parser_free(p);
    }
}

static void test_chunked(void)
{
    static const char r[] =
        "POST /v1/channels/9/messages HTTP/1.1\r\n"
        "Host: a\r\n"
        "Transfer-Encoding: chunked\r\n"
        "\r\n"
        "5\r\nhello\r\n"
        "6;ext=1\r\n world\r\n"
        "0\r\n"
        "Authorization: Bearer trailer\r\n"
        "\r\n";
    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 1 << 20);
        const http_request *q;
        size_t used;
        CHECK_EQ(run(p, S(r), steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof r - 1);
        CHECK(q != NULL);
        if (q) {
            CHECK_MEM(q->body, q->body_len, "hello world");
            CHECK_EQ(q->authorization.len, 0);   /* trailers are never headers */
            CHECK_EQ(q->keep_alive, 1);
        }
        http_parser_free(p);
    }
}

static void test_pipelined(void)
{
    static const char r1[] = "POST /a?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    static const char r2[] = "DELETE /v1/sessions/current HTTP/1.1\r\nAuthorization: Bearer t\r\n\r\n";
    static const char r3[] = "GET /healthz HTTP/1.1\r\n\r\n";
    char all[sizeof r1 + sizeof r2 + sizeof r3];
    size_t n = 0;
    memcpy(all + n, r1, sizeof r1 - 1), n += sizeof r1 - 1;
    memcpy(all + n, r2, sizeof r2 - 1), n += sizeof r2 - 1;
    memcpy(all + n, r3, sizeof r3 - 1), n += sizeof r3 - 1;

    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 1 << 20);
        const http_request *q;
        size_t used, off = 0;
        CHECK_EQ(run(p, all, n, steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof r1 - 1);
        CHECK(q && q->method == HTTP_POST && iy_str_eq(q->path, "/a") && iy_str_eq(q->query, "x=1") &&
              q->body_len == 3 && memcmp(q->body, "abc", 3) == 0);
        http_parser_next(p);
        off += used;
        CHECK_EQ(run(p, all + off, n - off, steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof r2 - 1);
        CHECK(q && q->method == HTTP_DELETE && iy_str_eq(q->path, "/v1/sessions/current") &&
              iy_str_eq(q->authorization, "Bearer t") && q->body_len == 0);
        http_parser_next(p);
        off += used;
        CHECK_EQ(run(p, all + off, n - off, steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof r3 - 1);
        CHECK(q && q->method == HTTP_GET && iy_str_eq(q->path, "/healthz") && q->authorization.len == 0);
        http_parser_next(p);
        off += used;
        CHECK_EQ(off, n);
        /* Nothing pending: an empty feed needs more bytes. */
        CHECK_EQ(http_parser_feed(p, all, 0, &used, &q), 0);
        CHECK(q == NULL);
        http_parser_free(p);
    }
}

static int keep_alive_of(const char *r, size_t len)
{
    http_parser *p = http_parser_new(16384, 1024);
    const http_request *q;
    size_t used;
    int ka = -1;
    if (run(p, r, len, 0, &used, &q) == 0 && q && used == len) ka = q->keep_alive;
    http_parser_free(p);
    return ka;
}

static void test_keep_alive(void)
{
    CHECK_EQ(keep_alive_of(S("GET / HTTP/1.1\r\n\r\n")), 1);
    CHECK_EQ(keep_alive_of(S("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")), 0);
    CHECK_EQ(keep_alive_of(S("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")), 0);
    CHECK_EQ(keep_alive_of(S("GET / HTTP/1.0\r\n\r\n")), 0);
    CHECK_EQ(keep_alive_of(S("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")), 1);
    CHECK_EQ(keep_alive_of(S("POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")), 0);
}

static void test_websocket(void)
{
    static const char head[] =
        "GET /v1/ws HTTP/1.1\r\n"
        "Host: chat.example\r\n"
        "Upgrade: websocket\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Origin: https://chat.example\r\n"
        "\r\n";
    static const char frame[] = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    char all[sizeof head + sizeof frame];
    memcpy(all, head, sizeof head - 1);
    memcpy(all + sizeof head - 1, frame, sizeof frame - 1);
    size_t n = sizeof head - 1 + sizeof frame - 1;

    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 1024);
        const http_request *q;
        size_t used;
        CHECK_EQ(run(p, all, n, steps[i], &used, &q), 0);
        CHECK_EQ(used, sizeof head - 1);
        CHECK(q != NULL);
        if (q) {
            CHECK_EQ(q->websocket, 1);
            STR_IS(q->path, "/v1/ws");
            STR_IS(q->upgrade, "websocket");
            STR_IS(q->ws_key, "dGhlIHNhbXBsZSBub25jZQ==");
            STR_IS(q->ws_version, "13");
            STR_IS(q->origin, "https://chat.example");
        }
        /* The WebSocket bytes are left to the caller; feeding them again
         * before next() still returns the request and consumes nothing. */
        size_t c;
        CHECK_EQ(http_parser_feed(p, all + used, n - used, &c, &q), 0);
        CHECK_EQ(c, 0);
        http_parser_free(p);
    }

    /* Not a WebSocket request: wrong method, wrong protocol, no token. */
    static const char *const no[] = {
        "POST /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        "GET /v1/ws HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\n\r\n",
        "GET /v1/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrades\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        http_parser *p = http_parser_new(16384, 1024);
        const http_request *q;
        size_t used;
        CHECK_EQ(run(p, no[i], strlen(no[i]), 0, &used, &q), 0);
        CHECK(q && q->websocket == 0);
        CHECK_EQ(used, strlen(no[i]));
        http_parser_free(p);
    }

    /* A declined upgrade: the connection goes on speaking HTTP. */
    static const char two[] =
        "GET /x HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        "GET /y HTTP/1.1\r\n\r\n";
    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 1024);
        const http_request *q;
        size_t used, off;
        CHECK_EQ(run(p, S(two), steps[i], &used, &q), 0);
        CHECK(q && iy_str_eq(q->path, "/x"));
        off = used;
        http_parser_next(p);
        CHECK_EQ(run(p, two + off, sizeof two - 1 - off, steps[i], &used, &q), 0);
        CHECK(q && iy_str_eq(q->path, "/y"));
        CHECK_EQ(off + used, sizeof two - 1);
        http_parser_free(p);
    }
}

/* Feeds r with the given limits; returns the feed result and the status. */
static int fail_of(const char *r, size_t len, size_t max_head, size_t max_body, size_t step,
                   int *status)
{
    http_parser *p = http_parser_new(max_head, max_body);
    const http_request *q;
    size_t used;
    int rc = run(p, r, len, step, &used, &q);
    *status = http_parser_error_status(p);
    if (rc < 0) {   /* dead: stays dead */
        size_t c;
        int again = http_parser_feed(p, "GET / HTTP/1.1\r\n\r\n", 18, &c, &q);
        if (again != rc || q) rc = 2000;
    }
    http_parser_free(p);
    return rc;
}

static void test_errors(void)
{
    int st;
    for (size_t i = 0; i < NSTEPS; i++) {
        size_t s = steps[i];
        /* Oversized head. */
        char big[300];
        int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Pad: %0200d\r\n\r\n", 0);
        CHECK_EQ(fail_of(big, (size_t)n, 128, 1024, s, &st), IY_ETOOBIG);
        CHECK_EQ(st, 431);
        /* A head of exactly max_head bytes passes; one byte less fails. */
        CHECK_EQ(fail_of(big, (size_t)n, (size_t)n, 1024, s, &st), 0);
        CHECK_EQ(st, 0);
        CHECK_EQ(fail_of(big, (size_t)n, (size_t)n - 1, 1024, s, &st), IY_ETOOBIG);
        CHECK_EQ(st, 431);
        /* A long URL alone. */
        char url[300];
        n = snprintf(url, sizeof url, "GET /%0200d HTTP/1.1\r\n\r\n", 0);
        CHECK_EQ(fail_of(url, (size_t)n, 128, 1024, s, &st), IY_ETOOBIG);
        CHECK_EQ(st, 431);

        /* Oversized body, refused from Content-Length before any body byte. */
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n"), 16384, 10, s, &st),
                 IY_ETOOBIG);
        CHECK_EQ(st, 413);
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789"), 16384, 10, s, &st),
                 0);
        /* Oversized chunked body. */
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "6\r\n012345\r\n5\r\n6789a\r\n0\r\n\r\n"), 16384, 10, s, &st), IY_ETOOBIG);
        CHECK_EQ(st, 413);

        /* Malformed request lines and framing. */
        CHECK_EQ(fail_of(S("GARBAGE\r\n\r\n"), 16384, 1024, s, &st), IY_EPROTO);
        CHECK_EQ(st, 400);
        CHECK_EQ(fail_of(S("GET /x HTTP/1.1 extra\r\n\r\n"), 16384, 1024, s, &st), IY_EPROTO);
        CHECK_EQ(st, 400);
        CHECK_EQ(fail_of(S("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), 16384, 1024, s, &st), IY_EPROTO);
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), 16384, 1024, s, &st),
                 IY_EPROTO);
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
                         16384, 1024, s, &st), IY_EPROTO);
        /* Both Transfer-Encoding and Content-Length: request smuggling bait. */
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
                           "0\r\n\r\n"), 16384, 1024, s, &st), IY_EPROTO);
        CHECK_EQ(st, 400);
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "0\r\n\r\n"), 16384, 1024, s, &st), IY_EPROTO);
        /* Transfer-Encoding that does not end in chunked. */
        CHECK_EQ(fail_of(S("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx"), 16384, 1024, s, &st),
                 IY_EPROTO);
        /* HTTP/2 preface. */
        CHECK_EQ(fail_of(S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 16384, 1024, s, &st), IY_EPROTO);
    }
    /* Chunk framing bigger than allowed (a flood of chunk extensions). */
    {
        iy_buf b = { 0 };
        iy_buf_append_str(&b, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (int i = 0; i < 200; i++) iy_buf_append_str(&b, "1;aaaaaaaaaaaaaaaaaaaaaaa=b\r\nx\r\n");
        iy_buf_append_str(&b, "0\r\n\r\n");
        CHECK_EQ(fail_of(b.data, b.len, 1024, 1024, 0, &st), IY_ETOOBIG);
        CHECK_EQ(st, 413);
        CHECK_EQ(fail_of(b.data, b.len, 16384, 1024, 0, &st), 0);
        iy_buf_free(&b);
    }
}

static void test_big_body_then_small(void)
{
    /* A body bigger than the idle storage, then a small request on the same
     * connection (exercises the storage release in next). */
    size_t len = 100000;
    iy_buf b = { 0 };
    iy_buf_appendf(&b, "PUT /big HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", len);
    for (size_t i = 0; i < len; i++) iy_buf_putc(&b, (char)('a' + i % 26));
    size_t first = b.len;
    iy_buf_append_str(&b, "PATCH /v1/me HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
    http_parser *p = http_parser_new(16384, 200000);
    const http_request *q;
    size_t used;
    CHECK_EQ(run(p, b.data, b.len, 4096, &used, &q), 0);
    CHECK_EQ(used, first);
    CHECK(q && q->method == HTTP_PUT && q->body_len == len && q->body[len - 1] == (char)('a' + (len - 1) % 26));
    http_parser_next(p);
    CHECK_EQ(run(p, b.data + used, b.len - used, 0, &used, &q), 0);
    CHECK(q && q->method == HTTP_PATCH && q->body_len == 2 && iy_str_eq(q->path, "/v1/me"));
    http_parser_free(p);
    iy_buf_free(&b);
    http_parser_free(NULL);
}

static void test_urls(void)
{
    static const struct { const char *target, *path, *query; } t[] = {
        { "/v1/users?username=ann", "/v1/users", "username=ann" },
        { "/v1/users?", "/v1/users", "" },
        { "/a?b?c", "/a", "b?c" },
        { "/a#frag", "/a", "" },
        { "/a?x=1#frag", "/a", "x=1" },
        { "http://chat.example:8080/v1/me?x=2", "/v1/me", "x=2" },
        { "http://chat.example", "/", "" },
        { "*", "*", "" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char r[256];
        int n = snprintf(r, sizeof r, "%s %s HTTP/1.1\r\n\r\n", t[i].target[0] == '*' ? "OPTIONS" : "GET",
                         t[i].target);
        http_parser *p = http_parser_new(16384, 1024);
        const http_request *q;
        size_t used;
        int rc = run(p, r, (size_t)n, 0, &used, &q);
        int ok = rc == 0 && q && iy_str_eq(q->path, t[i].path) && iy_str_eq(q->query, t[i].query);
        if (!ok) fprintf(stderr, "url %s: rc %d\n", t[i].target, rc);
        CHECK(ok);
        http_parser_free(p);
    }
}

static void test_query_get(void)
{
    iy_str q = IY_STR("before_seq=10&limit=20&name=J%C3%BCrgen+M%2b&flag&empty=&bad=%zz&short=%4&k%5Fx=y&limit=99");
    char out[64];
    CHECK_EQ(http_query_get(q, "limit", out, sizeof out), 1);
    CHECK(strcmp(out, "20") == 0);                       /* first occurrence */
    CHECK_EQ(http_query_get(q, "before_seq", out, sizeof out), 1);
    CHECK(strcmp(out, "10") == 0);
    CHECK_EQ(http_query_get(q, "after_seq", out, sizeof out), 0);
    CHECK_EQ(http_query_get(q, "lim", out, sizeof out), 0);
    CHECK_EQ(http_query_get(q, "name", out, sizeof out), 1);
    CHECK(strcmp(out, "J\xc3\xbcrgen M+") == 0);
    CHECK_EQ(http_query_get(q, "flag", out, sizeof out), 1);
    CHECK(strcmp(out, "") == 0);
    CHECK_EQ(http_query_get(q, "empty", out, sizeof out), 1);
    CHECK(strcmp(out, "") == 0);
    CHECK_EQ(http_query_get(q, "bad", out, sizeof out), IY_EINVAL);
    CHECK_EQ(http_query_get(q, "short", out, sizeof out), IY_EINVAL);
    CHECK_EQ(http_query_get(q, "k_x", out, sizeof out), 1);  /* keys are decoded too */
    CHECK(strcmp(out, "y") == 0);
    /* Too long: "J\xc3\xbcrgen M+" is 10 bytes, needs 11 with the NUL. */
    CHECK_EQ(http_query_get(q, "name", out, 10), IY_EINVAL);
    CHECK_EQ(http_query_get(q, "name", out, 11), 1);
    CHECK_EQ(http_query_get(q, "limit", out, 0), IY_EINVAL);
    CHECK_EQ(http_query_get(IY_STR("a=%00"), "a", out, sizeof out), IY_EINVAL);
    CHECK_EQ(http_query_get(IY_STR(""), "a", out, sizeof out), 0);
    CHECK_EQ(http_query_get(IY_STR("&&a=1&"), "a", out, sizeof out), 1);
    CHECK(strcmp(out, "1") == 0);
    CHECK_EQ(http_query_get(IY_STR("users=1,2,3"), "users", out, sizeof out), 1);
    CHECK(strcmp(out, "1,2,3") == 0);
}

static void test_path_split(void)
{
    iy_str seg[4];
    CHECK_EQ(http_path_split(IY_STR("/v1/users/7"), seg, 4), 3);
    STR_IS(seg[0], "v1");
    STR_IS(seg[1], "users");
    STR_IS(seg[2], "7");
    CHECK_EQ(http_path_split(IY_STR("/"), seg, 4), 0);
    CHECK_EQ(http_path_split(IY_STR("/healthz"), seg, 4), 1);
    STR_IS(seg[0], "healthz");
    CHECK_EQ(http_path_split(IY_STR("/v1/me/"), seg, 4), 2);
    CHECK_EQ(http_path_split(IY_STR("/a/b/c/d"), seg, 4), 4);
    CHECK_EQ(http_path_split(IY_STR("/a/b/c/d/e"), seg, 4), IY_EINVAL);
    CHECK_EQ(http_path_split(IY_STR("/a//b"), seg, 4), IY_EINVAL);
    CHECK_EQ(http_path_split(IY_STR("//"), seg, 4), IY_EINVAL);
    CHECK_EQ(http_path_split(IY_STR("a/b"), seg, 4), IY_EINVAL);
    CHECK_EQ(http_path_split(IY_STR(""), seg, 4), IY_EINVAL);
    CHECK_EQ(http_path_split(IY_STR("/a"), seg, 0), IY_EINVAL);
}

static void test_response_head(void)
{
    iy_buf b = { 0 };
    http_response_head(&b, 201, "application/json", 42, 1, NULL);
    CHECK_MEM(b.data, b.len,
              "HTTP/1.1 201 Created\r\n"
              "Content-Type: application/json\r\n"
              "Content-Length: 42\r\n"
              "Connection: keep-alive\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "Referrer-Policy: no-referrer\r\n"
              "\r\n");
    iy_buf_reset(&b);
    http_response_head(&b, 204, NULL, 0, 0, "X-Frame-Options: DENY\r\n");
    CHECK_MEM(b.data, b.len,
              "HTTP/1.1 204 No Content\r\n"
              "Content-Length: 0\r\n"
              "Connection: close\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "Referrer-Policy: no-referrer\r\n"
              "X-Frame-Options: DENY\r\n"
              "\r\n");
    /* An answer that says how it may be cached replaces the default no-store. */
    iy_buf_reset(&b);
    http_response_head(&b, 200, "application/json", 2, 1, "Cache-Control: public, max-age=3600\r\n");
    CHECK_MEM(b.data, b.len,
              "HTTP/1.1 200 OK\r\n"
              "Content-Type: application/json\r\n"
              "Content-Length: 2\r\n"
              "Connection: keep-alive\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "Referrer-Policy: no-referrer\r\n"
              "Cache-Control: public, max-age=3600\r\n"
              "\r\n");
    iy_buf_free(&b);
    CHECK(strcmp(http_status_text(200), "OK") == 0);
    CHECK(strcmp(http_status_text(400), "Bad Request") == 0);
    CHECK(strcmp(http_status_text(413), "Content Too Large") == 0);
    CHECK(strcmp(http_status_text(431), "Request Header Fields Too Large") == 0);
    CHECK(strcmp(http_status_text(503), "Service Unavailable") == 0);
    CHECK(strcmp(http_status_text(299), "Unknown") == 0);
}

/* What the connection's deadline and memory budget read: the declared body
 * while it arrives, the bytes held, X-Forwarded-For. */
static void test_declared_and_buffered(void)
{
    static const char head[] =
        "POST /v1/sessions HTTP/1.1\r\n"
        "Host: a\r\n"
        "X-Forwarded-For: 10.0.0.1\r\n"
        "X-Forwarded-For: 203.0.113.9, 198.51.100.7\r\n"
        "Content-Length: 1000\r\n"
        "\r\n";
    http_parser *p = http_parser_new(16384, 1 << 20);
    const http_request *q = NULL;
    size_t used;
    CHECK_EQ(http_parser_declared(p), 0);
    CHECK_EQ(http_parser_feed(p, "POST /v1/sess", 13, &used, &q), 0);
    CHECK_EQ(http_parser_declared(p), 0);                   /* still in the head */
    CHECK_EQ(http_parser_feed(p, head + 13, sizeof head - 14, &used, &q), 0);
    CHECK(q == NULL);
    CHECK_EQ(http_parser_declared(p), 1000);
    char body[600];
    memset(body, 'x', sizeof body);
    CHECK_EQ(http_parser_feed(p, body, sizeof body, &used, &q), 0);
    CHECK(http_parser_buffered(p) >= 600);
    CHECK_EQ(http_parser_feed(p, body, 400, &used, &q), 0);
    CHECK(q != NULL);
    if (q) STR_IS(q->forwarded_for, "203.0.113.9, 198.51.100.7");   /* the last header wins */
    CHECK_EQ(http_parser_declared(p), 0);                   /* complete */
    http_parser_next(p);
    CHECK(http_parser_buffered(p) < 600);
    http_parser_free(p);

    static const char chunked[] = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel";
    p = http_parser_new(16384, 5000);
    CHECK_EQ(http_parser_feed(p, chunked, sizeof chunked - 1, &used, &q), 0);
    CHECK_EQ(http_parser_declared(p), 5000);                /* unknown: the most it may be */
    http_parser_free(p);
}

/* Streams s through p `step` bytes at a time as a transport does with
 * head_stop on: at the head, stream_body(max) if max, then collect the
 * body chunks. Returns the last feed's result; *body gets the streamed
 * bytes; *req the finished request (or NULL). */
static int stream_run(http_parser *p, const char *s, size_t len, size_t step, uint64_t max, iy_buf *body,
                      const http_request **req, int *saw_head)
{
    size_t off = 0;
    *req = NULL;
    *saw_head = 0;
    while (off < len || (*saw_head == 1 && !*req)) {
        size_t n = step && step < len - off ? step : len - off, c = 0;
        int rc = http_parser_feed(p, s + off, n, &c, req);
        if (rc < 0) return rc;
        off += c;
        size_t cl;
        const char *ch = http_parser_body_chunk(p, &cl);
        if (ch) iy_buf_append(body, ch, cl);
        if (*req) return 0;
        const http_request *h = http_parser_head(p);
        if (h && *saw_head == 0) {
            *saw_head = 1;
            if (max && (rc = http_parser_stream_body(p, max)) != 0) return rc;
            if (!max) *saw_head = 2;
            continue;
        }
        if (*saw_head == 1) *saw_head = 2;
        if (c == 0 && off >= len) break;
    }
    return 0;
}

static void test_streamed_body(void)
{
    static const char up[] =
        "POST /v1/uploads?name=a.txt HTTP/1.1\r\nHost: h\r\nContent-Type: image/png\r\nExpect: 100-continue\r\n"
        "Content-Length: 26\r\n\r\nabcdefghijklmnopqrstuvwxyz"
        "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    for (size_t i = 0; i < NSTEPS; i++) {
        /* a body bigger than max_body (16 bytes here) is fine as a stream */
        http_parser *p = http_parser_new(16384, 16);
        http_parser_set_head_stop(p, 1);
        iy_buf body = { 0 };
        const http_request *q;
        int seen;
        CHECK_EQ(stream_run(p, S(up), steps[i], 100, &body, &q, &seen), 0);
        CHECK(seen >= 1);
        CHECK(q != NULL);
        if (q) {
            CHECK_EQ(q->method, HTTP_POST);
            STR_IS(q->path, "/v1/uploads");
            STR_IS(q->query, "name=a.txt");
            STR_IS(q->content_type, "image/png");
            STR_IS(q->expect, "100-continue");
            CHECK_EQ(q->streamed, 1);
            CHECK_EQ(q->body_len, 0);
        }
        CHECK_MEM(body.data, body.len, "abcdefghijklmnopqrstuvwxyz");
        CHECK_EQ(http_parser_buffered(p) < 200, 1);   /* the body was never held */
        /* keep-alive: the next request parses as usual */
        http_parser_next(p);
        size_t used;
        const char *rest = strstr(up, "GET /next");
        CHECK_EQ(run(p, rest, strlen(rest), steps[i], &used, &q), 0);
        CHECK(q && iy_str_eq(q->path, "/next") && q->streamed == 0);
        iy_buf_free(&body);
        http_parser_free(p);
    }
    /* chunked, with a trailer */
    static const char ch[] =
        "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";
    for (size_t i = 0; i < NSTEPS; i++) {
        http_parser *p = http_parser_new(16384, 4);
        http_parser_set_head_stop(p, 1);
        iy_buf body = { 0 };
        const http_request *q;
        int seen;
        CHECK_EQ(stream_run(p, S(ch), steps[i], 11, &body, &q, &seen), 0);
        CHECK(q && q->streamed);
        CHECK_MEM(body.data, body.len, "hello world");
        iy_buf_free(&body);
        http_parser_free(p);
    }
    /* over the stream's max: a Content-Length at once, a chunked body as it comes */
    {
        http_parser *p = http_parser_new(16384, 1 << 20);
        http_parser_set_head_stop(p, 1);
        iy_buf body = { 0 };
        const http_request *q;
        int seen;
        CHECK_EQ(stream_run(p, S(up), 0, 25, &body, &q, &seen), IY_ETOOBIG);
        CHECK_EQ(http_parser_error_status(p), 413);
        CHECK_EQ(body.len, 0);
        http_parser_free(p);
        p = http_parser_new(16384, 1 << 20);
        http_parser_set_head_stop(p, 1);
        CHECK_EQ(stream_run(p, S(ch), 0, 10, &body, &q, &seen), IY_ETOOBIG);
        CHECK_EQ(http_parser_error_status(p), 413);
        iy_buf_free(&body);
        http_parser_free(p);
    }
    /* told the head but held as usual: max_body applies, at the next feed */
    {
        http_parser *p = http_parser_new(16384, 16);
        http_parser_set_head_stop(p, 1);
        iy_buf body = { 0 };
        const http_request *q;
        int seen;
        CHECK_EQ(stream_run(p, S(up), 0, 0, &body, &q, &seen), IY_ETOOBIG);
        CHECK_EQ(http_parser_error_status(p), 413);
        iy_buf_free(&body);
        http_parser_free(p);
        static const char small[] = "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
        p = http_parser_new(16384, 16);
        http_parser_set_head_stop(p, 1);
        CHECK_EQ(stream_run(p, S(small), 1, 0, &body, &q, &seen), 0);
        CHECK(q && !q->streamed);
        if (q) CHECK_MEM(q->body, q->body_len, "abc");
        CHECK_EQ(body.len, 0);
        iy_buf_free(&body);
        http_parser_free(p);
    }
    /* a request without a body is never stopped at its head */
    {
        http_parser *p = http_parser_new(16384, 16);
        http_parser_set_head_stop(p, 1);
        static const char g[] = "GET /a HTTP/1.1\r\n\r\n";
        size_t used;
        const http_request *q;
        CHECK_EQ(run(p, S(g), 0, &used, &q), 0);
        CHECK(q != NULL && http_parser_head(p) == NULL);
        CHECK_EQ(http_parser_stream_body(p, 10), IY_EINVAL);
        http_parser_free(p);
    }
}

int main(void)
{
    test_streamed_body();
    test_declared_and_buffered();
    test_get_query();
    test_header_split();
    test_post_body();
    test_chunked();
    test_pipelined();
    test_keep_alive();
    test_websocket();
    test_errors();
    test_big_body_then_small();
    test_urls();
    test_query_get();
    test_path_split();
    test_response_head();
    return T_DONE("http");
}
