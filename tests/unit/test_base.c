/* test_base.c — the UTF-8 validator (whole and one byte at a time) and the
 * u64 hash map (against a plain array as the model), the buffer, and the
 * escaping of log lines. */
#include "t.h"
#include "base/u64map.h"
#include "base/utf8.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/version.h"
#include "api/routes.h"
#include "base/counter.h"
#include <string.h>
#include <stdint.h>
#include <stdlib.h>

/* Valid iff the whole-buffer check and the byte-at-a-time feed agree on it. */
static int utf8_ok(const char *s, size_t n)
{
    int whole = iy_utf8_validate(s, n) == 0;
    iy_utf8 st = { 0, 0, 0 };
    int bytewise = 1;
    for (size_t i = 0; i < n && bytewise; i++)
        bytewise = iy_utf8_feed(&st, (const uint8_t *)s + i, 1) == 0;
    bytewise = bytewise && iy_utf8_done(&st);
    CHECK_EQ(whole, bytewise);
    return whole;
}

#define OK(lit) CHECK(utf8_ok(lit, sizeof(lit) - 1))
#define BAD(lit) CHECK(!utf8_ok(lit, sizeof(lit) - 1))

static void test_utf8(void)
{
    OK("");
    OK("hello");
    OK("\xc2\x80");                 /* U+0080 */
    OK("\xdf\xbf");                 /* U+07FF */
    OK("\xe0\xa0\x80");             /* U+0800 */
    OK("\xed\x9f\xbf");             /* U+D7FF */
    OK("\xee\x80\x80");             /* U+E000 */
    OK("\xef\xbf\xbf");             /* U+FFFF */
    OK("\xf0\x90\x80\x80");         /* U+10000 */
    OK("\xf0\x9f\x98\x80");         /* U+1F600 */
    OK("\xf4\x8f\xbf\xbf");         /* U+10FFFF */
    OK("\xea\xb0\x80\xeb\x82\x98"); /* 가나 */
    BAD("\x80");                    /* lone continuation */
    BAD("\xc0\x80");                /* overlong NUL */
    BAD("\xc1\xbf");                /* overlong */
    BAD("\xe0\x80\x80");            /* overlong 3-byte */
    BAD("\xe0\x9f\xbf");            /* overlong 3-byte */
    BAD("\xed\xa0\x80");            /* U+D800 surrogate */
    BAD("\xed\xbf\xbf");            /* U+DFFF surrogate */
    BAD("\xf0\x80\x80\x80");        /* overlong 4-byte */
    BAD("\xf0\x8f\xbf\xbf");        /* overlong 4-byte */
    BAD("\xf4\x90\x80\x80");        /* U+110000 */
    BAD("\xf5\x80\x80\x80");
    BAD("\xff");
    BAD("\xc2");                    /* truncated */
    BAD("\xe0\xa0");                /* truncated */
    BAD("\xf0\x9f\x98");            /* truncated */
    BAD("\xc2\x41");                /* missing continuation */
    BAD("a\xf0\x9f\x98\x80\x80");   /* extra continuation */

    /* Rejection comes as soon as the prefix cannot be valid. */
    iy_utf8 st = { 0, 0, 0 };
    CHECK_EQ(iy_utf8_feed(&st, (const uint8_t *)"\xed", 1), 0);
    CHECK(iy_utf8_feed(&st, (const uint8_t *)"\xa0", 1) != 0);
    st = (iy_utf8){ 0, 0, 0 };
    CHECK_EQ(iy_utf8_feed(&st, (const uint8_t *)"\xf4", 1), 0);
    CHECK(iy_utf8_feed(&st, (const uint8_t *)"\x90", 1) != 0);

    CHECK_EQ(iy_utf8_count("", 0), 0);
    CHECK_EQ(iy_utf8_count("abc", 3), 3);
    CHECK_EQ(iy_utf8_count("\xf0\x9f\x98\x80\xea\xb0\x80x", 8), 3);

    /* Every 1- and 2-byte input agrees between the two paths. */
    for (int a = 0; a < 256; a++) {
        char s1[1] = { (char)a };
        utf8_ok(s1, 1);
        for (int b = 0; b < 256; b += 3) {
            char s2[2] = { (char)a, (char)b };
            utf8_ok(s2, 2);
        }
    }
}

static void test_u64map(void)
{
    enum { N = 5000 };
    u64map m = { 0 };
    static void *model[N + 1];
    CHECK(u64map_get(&m, 1) == NULL);
    CHECK(u64map_del(&m, 1) == NULL);
    srand(7);
    for (int round = 0; round < 40000; round++) {
        uint64_t k = (uint64_t)(rand() % N) + 1;
        /* Keys spread over a wide range but clustered, to provoke probing chains. */
        uint64_t key = k * 1024;
        int op = rand() % 3;
        if (op == 0) {
            void *v = (void *)(uintptr_t)(round + 1);
            u64map_put(&m, key, v);
            model[k] = v;
        } else if (op == 1) {
            CHECK(u64map_del(&m, key) == model[k]);
            model[k] = NULL;
        } else {
            CHECK(u64map_get(&m, key) == model[k]);
        }
    }
    size_t n = 0;
    for (int k = 1; k <= N; k++) {
        n += model[k] != NULL;
        CHECK(u64map_get(&m, (uint64_t)k * 1024) == model[k]);
    }
    CHECK_EQ(m.n, n);
    u64map_free(&m);
    CHECK_EQ(m.n, 0);
}

/* The u64-value side: a stored 0 is not absence; clear keeps nothing. */
static void test_u64map_values(void)
{
    u64map m = { 0 };
    CHECK(u64map_find(&m, 7) == NULL);
    u64map_set(&m, 7, 0);
    CHECK(u64map_find(&m, 7) != NULL && *u64map_find(&m, 7) == 0);
    for (uint64_t k = 1; k <= 1000; k++) u64map_set(&m, k << 20, k * 3);
    for (uint64_t k = 1; k <= 1000; k++) CHECK(u64map_find(&m, k << 20) && *u64map_find(&m, k << 20) == k * 3);
    *u64map_find(&m, 5 << 20) = 99;                 /* updated in place through the slot */
    CHECK_EQ(*u64map_find(&m, 5 << 20), 99);
    CHECK(u64map_find(&m, 0) == NULL);              /* the reserved key is never found */
    CHECK_EQ(m.n, 1001);
    u64map_clear(&m);
    CHECK_EQ(m.n, 0);
    CHECK(u64map_find(&m, 7) == NULL && u64map_find(&m, 5 << 20) == NULL);
    u64map_set(&m, 7, 1);
    CHECK_EQ(*u64map_find(&m, 7), 1);
    u64map_free(&m);
}

static void test_buf(void)
{
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "hello");
    iy_buf_appendf(&b, " %d", 42);
    CHECK_MEM(b.data, b.len, "hello 42");
    iy_buf_consume(&b, 6);
    CHECK_MEM(b.data, b.len, "42");
    for (int i = 0; i < 1000; i++) iy_buf_appendf(&b, "%300s", "x");
    CHECK_EQ(b.len, 2 + 300000);
    CHECK(iy_str_ieq((iy_str){ "WebSocket", 9 }, "websocket"));
    iy_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0);
}

/* Log lines: a user-chosen string never ends the line or reaches the
 * terminal as an escape sequence. */
static void test_log_escape(void)
{
    char out[64];
    size_t n = iy_log_escape(out, sizeof out, "phone\n2026-01-01T00:00:00.000Z login: user 1");
    CHECK(strchr(out, '\n') == NULL);
    CHECK_MEM(out, 14, "phone\\x0a2026-");
    n = iy_log_escape(out, sizeof out, "\x1b[31mred\x7f a\\b \xec\x9d\xb4");
    CHECK_MEM(out, n, "\\x1b[31mred\\x7f a\\\\b \xec\x9d\xb4");   /* UTF-8 passes as it is */
    n = iy_log_escape(out, 6, "ab\ncd");           /* a cut keeps escapes whole */
    CHECK_MEM(out, n, "ab");
    n = iy_log_escape(out, 7, "ab\ncd");
    CHECK_MEM(out, n, "ab\\x0a");
    CHECK_EQ(iy_log_escape(out, 1, "x"), 0);
    CHECK_EQ(out[0], '\0');
}

/* JSON lines: quotes, control bytes and invalid UTF-8 never break the
 * object; valid UTF-8 passes. */
static void test_log_json(void)
{
    char out[64];
    size_t n = iy_log_json_escape(out, sizeof out, "a\"b\\c\n\x01");
    CHECK_MEM(out, n, "a\\\"b\\\\c\\u000a\\u0001");
    n = iy_log_json_escape(out, sizeof out, "\xec\x9d\xb4 \xff\xc3");
    CHECK_MEM(out, n, "\xec\x9d\xb4 \xef\xbf\xbd\xef\xbf\xbd");
    n = iy_log_json_escape(out, 4, "ab\n");      /* a cut keeps escapes whole */
    CHECK_MEM(out, n, "ab");
    int v = -1;
    CHECK_EQ(iy_log_level_parse("warn", &v), 0);
    CHECK_EQ(v, IY_LOG_WARN);
    CHECK_EQ(iy_log_level_parse("verbose", &v), -1);
    CHECK_EQ(iy_log_format_parse("json", &v), 0);
    CHECK_EQ(v, IY_LOG_JSON);
    CHECK_EQ(iy_log_format_parse("xml", &v), -1);
    /* A budget passes per_s lines a second, then refuses (and counts). */
    static iy_log_budget b = { "test lines", 3, 0, 0, 0 };
    int passed = 0;
    for (int i = 0; i < 10; i++) passed += iy_log_allow(&b);
    CHECK(passed >= 3 && passed <= 6);   /* 3, or 6 if the second turned during the loop */
    CHECK(atomic_load(&b.dropped) >= 4);
}

/* Route templates: ids never become label values; unknown paths are "other". */
static void test_routes(void)
{
    static const struct { const char *path, *route; } cases[] = {
        { "/healthz", "/healthz" }, { "/metrics", "/metrics" }, { "/v1/ws", "/v1/ws" },
        { "/v1/channels/123/messages", "/v1/channels/{id}/messages" },
        { "/v1/sessions/current", "/v1/sessions/current" }, { "/v1/sessions/abcdef", "/v1/sessions/{id}" },
        { "/v1/messages/9/reactions/%F0%9F%91%8D", "/v1/messages/{id}/reactions/{emoji}" },
        { "/v1/channels/1/members/2", "/v1/channels/{id}/members/{id}" },
        { "/v1/nothing/here", "other" }, { "/v1", "other" }, { "/", "static" }, { "/app.js", "static" },
        { "//x", "other" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned r = api_route_of((iy_str){ cases[i].path, strlen(cases[i].path) });
        CHECK(r < api_route_count);
        CHECK(strcmp(api_route_names[r], cases[i].route) == 0);
    }
    /* Rendered with fixed labels; an out-of-range route counts as "other". */
    metrics_http_routes(api_route_names, api_route_count);
    metrics_http(api_route_of((iy_str){ "/v1/sync", 8 }), MM_GET, 200, 1000000);
    metrics_http(999, MM_POST, 503, 1000);
    iy_buf b = { 0 };
    metrics_render(&b);
    iy_buf_putc(&b, '\0');
    CHECK(strstr(b.data, "iyagi_http_responses_total{route=\"/v1/sync\",method=\"GET\",code=\"2xx\"} 1\n"));
    CHECK(strstr(b.data, "iyagi_http_responses_total{route=\"other\",method=\"POST\",code=\"5xx\"} 1\n"));
    CHECK(strstr(b.data, "iyagi_http_request_duration_seconds_count{route=\"/v1/sync\"} 1\n"));
    CHECK(strstr(b.data, "process_open_fds "));
    CHECK(strstr(b.data, "iyagi_build_info{version=\"" IYAGI_VERSION "\""));
    iy_buf_free(&b);
}

static void test_counter(void)
{
    counter *c = counter_new();
    CHECK_EQ(counter_get(c, 5), 0);
    CHECK(counter_inc(c, 5, 2));
    CHECK(counter_inc(c, 5, 2));
    CHECK(!counter_inc(c, 5, 2));          /* at max */
    CHECK(counter_inc(c, 6, 2));           /* another key */
    CHECK_EQ(counter_get(c, 5), 2);
    counter_dec(c, 5);
    CHECK(counter_inc(c, 5, 2));
    counter_dec(c, 5);
    counter_dec(c, 5);
    counter_dec(c, 5);                     /* below 0: stays 0 */
    CHECK_EQ(counter_get(c, 5), 0);
    CHECK(!counter_inc(c, 7, 0));          /* max 0: nothing fits */
    counter_free(c);
}

int main(void)
{
    test_counter();
    test_log_escape();
    test_log_json();
    test_routes();
    test_utf8();
    test_u64map();
    test_u64map_values();
    test_buf();
    return T_DONE("base");
}
