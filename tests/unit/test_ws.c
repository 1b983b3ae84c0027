/* test_ws.c — the WebSocket codec fed scripted client frames, whole, one
 * byte at a time and in odd-sized chunks; every mode must give the same
 * events and the same error. */
#include "t.h"
#include "codec/ws.h"
#include "base/err.h"
#include "base/utf8.h"
#include <stdlib.h>

static const uint8_t MASK[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* ---- helpers: run a byte stream through a reader, record events ---- */

typedef struct rec {
    ws_kind kind;
    uint16_t code;
    size_t len;
    uint8_t *data;     /* owned copy */
    int direct;        /* data pointed into the caller's bytes */
} rec;

typedef struct result {
    rec ev[64];
    int n;
    int err;
    size_t consumed[64]; /* whole mode: stream offset right after each event */
} result;

static void result_free(result *res)
{
    for (int i = 0; i < res->n; i++) free(res->ev[i].data);
    res->n = 0;
}

/* Feeds in[0..len) in chunks of `chunk` bytes (0: all at once). */
static void run(const void *in, size_t len, size_t max, size_t chunk, result *res)
{
    uint8_t *copy = malloc(len ? len : 1);
    ws_reader *r = ws_reader_new(max);
    size_t off = 0;
    int ok = 1;     /* per-call invariants, one CHECK per run */
    memcpy(copy, in, len);
    memset(res, 0, sizeof *res);
    if (chunk == 0) chunk = len ? len : 1;
    while (off < len && !res->err) {
        size_t end = off + chunk < len ? off + chunk : len;
        while (off < end) {
            size_t used = 99;
            ws_event ev;
            int rc = ws_reader_feed(r, copy + off, end - off, &used, &ev);
            if (rc < 0) {
                res->err = rc;
                ok &= ev.kind == WS_NONE;
                /* dead: the same error again */
                ok &= ws_reader_feed(r, copy + off, end - off, &used, &ev) == rc;
                break;
            }
            ok &= used <= end - off;
            off += used;
            if (ev.kind == WS_NONE) {
                ok &= off == end;
                break;
            }
            if (res->n < 64) {
                rec *e = &res->ev[res->n];
                e->kind = ev.kind;
                e->code = ev.close_code;
                e->len = ev.len;
                ok &= ev.data != NULL;
                e->data = malloc(ev.len ? ev.len : 1);
                if (ev.len) memcpy(e->data, ev.data, ev.len);
                e->direct = ev.data >= copy && ev.data <= copy + len;
                res->consumed[res->n] = off;
                res->n++;
            }
        }
    }
    CHECK(ok);
    ws_reader_free(r);
    free(copy);
}

static int same(const result *a, const result *b)
{
    if (a->n != b->n || a->err != b->err) return 0;
    for (int i = 0; i < a->n; i++) {
        const rec *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->len != y->len || memcmp(x->data, y->data, x->len) != 0) return 0;
        if (x->kind == WS_CLOSE && x->code != y->code) return 0;
    }
    return 1;
}

/* Runs whole, byte by byte and in 3- and 7-byte chunks; checks all agree and
 * leaves the whole-mode result in *res. */
static void run_all(const void *in, size_t len, size_t max, result *res)
{
    static const size_t chunks[] = { 1, 3, 7 };
    run(in, len, max, 0, res);
    for (size_t i = 0; i < sizeof chunks / sizeof chunks[0]; i++) {
        result other;
        run(in, len, max, chunks[i], &other);
        CHECK(same(res, &other));
        result_free(&other);
    }
}

static void frame(iy_buf *b, int op, int fin, const char *s)
{
    ws_client_frame_append(b, op, fin, s, strlen(s), MASK);
}

/* One frame alone; expects an error code (or 0). */
static int one_frame_err(int op, int fin, const void *p, size_t n, const uint8_t *mask, size_t max)
{
    iy_buf b = { 0 };
    result res;
    int err;
    ws_client_frame_append(&b, op, fin, p, n, mask);
    run_all(b.data, b.len, max, &res);
    err = res.err;
    result_free(&res);
    iy_buf_free(&b);
    return err;
}

/* ---- tests ---- */

static void test_masking(void)
{
    /* RFC 6455 5.7: a single-frame masked text message "Hello". */
    static const uint8_t rfc[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    iy_buf b = { 0 };
    result res;
    ws_client_frame_append(&b, WS_OP_TEXT, 1, "Hello", 5, MASK);
    CHECK_MEM(b.data, b.len, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
    run_all(rfc, sizeof rfc, 1000, &res);
    CHECK_EQ(res.err, 0);
    CHECK_EQ(res.n, 1);
    CHECK_EQ(res.ev[0].kind, WS_TEXT);
    CHECK_MEM(res.ev[0].data, res.ev[0].len, "Hello");
    CHECK(res.ev[0].direct);                    /* unmasked in place, no copy */
    CHECK_EQ(res.consumed[0], sizeof rfc);
    result_free(&res);
    iy_buf_free(&b);

    /* Unmasking of long payloads (8-byte path) at every mask phase. */
    for (size_t n = 0; n < 40; n++) {
        uint8_t p[40];
        for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 7 + 1);
        ws_client_frame_append(&b, WS_OP_BINARY, 1, p, n, MASK);
        run_all(b.data, b.len, 1000, &res);
        CHECK(res.n == 1 && res.ev[0].len == n && memcmp(res.ev[0].data, p, n) == 0);
        result_free(&res);
        iy_buf_reset(&b);
    }
    iy_buf_free(&b);
}

static void test_lengths(void)
{
    static const size_t sizes[] = { 0, 1, 125, 126, 127, 65535, 65536, 70001 };
    static const size_t hdr[] = { 6, 6, 6, 8, 8, 8, 14, 14 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        uint8_t *p = malloc(n + 1);
        iy_buf b = { 0 };
        result res;
        for (size_t k = 0; k < n; k++) p[k] = (uint8_t)(k * 31 + (k >> 8));
        ws_client_frame_append(&b, WS_OP_BINARY, 1, p, n, MASK);
        CHECK_EQ(b.len, hdr[i] + n);
        run_all(b.data, b.len, 100000, &res);
        CHECK_EQ(res.err, 0);
        CHECK_EQ(res.n, 1);
        CHECK_EQ(res.ev[0].kind, WS_BINARY);
        CHECK_EQ(res.ev[0].len, n);
        CHECK(memcmp(res.ev[0].data, p, n) == 0);
        result_free(&res);
        iy_buf_free(&b);
        free(p);
    }
    /* Non-minimal length encodings are accepted. */
    {
        static const uint8_t f16[] = { 0x82, 0xFE, 0x00, 0x03, 0, 0, 0, 0, 'a', 'b', 'c' };
        static const uint8_t f64[] = { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x03, 0, 0, 0, 0, 'a', 'b', 'c' };
        result res;
        run_all(f16, sizeof f16, 100, &res);
        CHECK(res.err == 0 && res.n == 1);
        CHECK_MEM(res.ev[0].data, res.ev[0].len, "abc");
        result_free(&res);
        run_all(f64, sizeof f64, 100, &res);
        CHECK(res.err == 0 && res.n == 1);
        CHECK_MEM(res.ev[0].data, res.ev[0].len, "abc");
        result_free(&res);
    }
}

static void test_stream(void)
{
    /* Several frames in one read: one event per call, consumed stops after each. */
    iy_buf b = { 0 };
    result res;
    size_t first;
    frame(&b, WS_OP_TEXT, 1, "one");
    first = b.len;
    frame(&b, WS_OP_PING, 1, "");
    ws_client_frame_append(&b, WS_OP_BINARY, 1, "\0\1\2", 3, MASK);
    run_all(b.data, b.len, 100, &res);
    CHECK_EQ(res.err, 0);
    CHECK_EQ(res.n, 3);
    CHECK_EQ(res.ev[0].kind, WS_TEXT);
    CHECK_MEM(res.ev[0].data, res.ev[0].len, "one");
    CHECK_EQ(res.consumed[0], first);
    CHECK_EQ(res.ev[1].kind, WS_PING);
    CHECK_EQ(res.ev[1].len, 0);
    CHECK_EQ(res.ev[2].kind, WS_BINARY);
    CHECK_MEM(res.ev[2].data, res.ev[2].len, "\0\1\2");
    CHECK_EQ(res.consumed[2], b.len);
    result_free(&res);
    iy_buf_free(&b);

    /* Feeding nothing is fine, even with a NULL pointer. */
    {
        ws_reader *r = ws_reader_new(10);
        ws_event ev;
        size_t used = 5;
        CHECK_EQ(ws_reader_feed(r, NULL, 0, &used, &ev), 0);
        CHECK_EQ(used, 0);
        CHECK_EQ(ev.kind, WS_NONE);
        ws_reader_free(r);
        ws_reader_free(NULL);
    }
}

static void test_fragments(void)
{
    iy_buf b = { 0 };
    result res;

    frame(&b, WS_OP_TEXT, 0, "Hel");
    frame(&b, WS_OP_CONT, 0, "lo, ");
    frame(&b, WS_OP_CONT, 1, "world");
    run_all(b.data, b.len, 100, &res);
    CHECK_EQ(res.err, 0);
    CHECK_EQ(res.n, 1);
    CHECK_EQ(res.ev[0].kind, WS_TEXT);
    CHECK_MEM(res.ev[0].data, res.ev[0].len, "Hello, world");
    CHECK(!res.ev[0].direct);
    result_free(&res);
    iy_buf_reset(&b);

    /* Control frames between fragments come out at once, message intact. */
    frame(&b, WS_OP_BINARY, 0, "ab");
    frame(&b, WS_OP_PING, 1, "ping!");
    frame(&b, WS_OP_CONT, 0, "cd");
    frame(&b, WS_OP_PONG, 1, "pong");
    frame(&b, WS_OP_CONT, 0, "");
    {
        uint8_t cp[5] = { 0x03, 0xE8, 'b', 'y', 'e' };
        ws_client_frame_append(&b, WS_OP_CLOSE, 1, cp, sizeof cp, MASK);
    }
    frame(&b, WS_OP_CONT, 1, "ef");
    run_all(b.data, b.len, 100, &res);
    CHECK_EQ(res.err, 0);
    CHECK_EQ(res.n, 4);
    CHECK_EQ(res.ev[0].kind, WS_PING);
    CHECK_MEM(res.ev[0].data, res.ev[0].len, "ping!");
    CHECK_EQ(res.ev[1].kind, WS_PONG);
    CHECK_MEM(res.ev[1].data, res.ev[1].len, "pong");
    CHECK_EQ(res.ev[2].kind, WS_CLOSE);
    CHECK_EQ(res.ev[2].code, 1000);
    CHECK_MEM(res.ev[2].data, res.ev[2].len, "bye");
    CHECK_EQ(res.ev[3].kind, WS_BINARY);
    CHECK_MEM(res.ev[3].data, res.ev[3].len, "abcdef");
    result_free(&res);
    iy_buf_reset(&b);

    /* Empty fragments make an empty message; then a second message. */
    frame(&b, WS_OP_TEXT, 0, "");
    frame(&b, WS_OP_CONT, 1, "");
    frame(&b, WS_OP_TEXT, 1, "next");
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == 0 && res.n == 2);
    CHECK(res.ev[0].kind == WS_TEXT && res.ev[0].len == 0);
    CHECK_MEM(res.ev[1].data, res.ev[1].len, "next");
    result_free(&res);
    iy_buf_reset(&b);

    /* Large fragmented message with a 125-byte ping in the middle: the
     * buffer grows, the ping is buffered after the partial message. */
    {
        size_t n = 50000;
        char *p = malloc(n), ping[125];
        for (size_t i = 0; i < n; i++) p[i] = (char)('a' + i % 26);
        memset(ping, 'P', sizeof ping);
        ws_client_frame_append(&b, WS_OP_TEXT, 0, p, 20000, MASK);
        ws_client_frame_append(&b, WS_OP_PING, 1, ping, sizeof ping, MASK);
        ws_client_frame_append(&b, WS_OP_CONT, 1, p + 20000, n - 20000, MASK);
        frame(&b, WS_OP_TEXT, 1, "small");         /* after the big buffer is released */
        run_all(b.data, b.len, n, &res);
        CHECK(res.err == 0 && res.n == 3);
        CHECK(res.ev[0].kind == WS_PING && res.ev[0].len == 125 && memcmp(res.ev[0].data, ping, 125) == 0);
        CHECK(res.ev[1].kind == WS_TEXT && res.ev[1].len == n && memcmp(res.ev[1].data, p, n) == 0);
        CHECK_MEM(res.ev[2].data, res.ev[2].len, "small");
        result_free(&res);
        iy_buf_reset(&b);
        free(p);
    }
    iy_buf_free(&b);
}

static int text_frags_err(const char *const *frags, int n)
{
    iy_buf b = { 0 };
    result res;
    int err;
    for (int i = 0; i < n; i++) frame(&b, i == 0 ? WS_OP_TEXT : WS_OP_CONT, i == n - 1, frags[i]);
    run_all(b.data, b.len, 1000, &res);
    err = res.err;
    if (!err) CHECK_EQ(res.n, 1);
    result_free(&res);
    iy_buf_free(&b);
    return err;
}

static void test_utf8(void)
{
    /* U+1F600 (F0 9F 98 80) split at every position over fragments. */
    const char *a[] = { "x\xF0", "\x9F\x98\x80y" };
    const char *b2[] = { "\xF0\x9F", "\x98\x80" };
    const char *c[] = { "\xF0\x9F\x98", "\x80" };
    const char *d[] = { "\xF0", "\x9F", "\x98", "\x80" };
    const char *e[] = { "\xE2\x82", "", "\xAC ok" };   /* U+20AC around an empty fragment */
    CHECK_EQ(text_frags_err(a, 2), 0);
    CHECK_EQ(text_frags_err(b2, 2), 0);
    CHECK_EQ(text_frags_err(c, 2), 0);
    CHECK_EQ(text_frags_err(d, 4), 0);
    CHECK_EQ(text_frags_err(e, 3), 0);

    /* Invalid sequences, whole and split. */
    const char *f[] = { "\xC0\xAF" };                 /* overlong '/' */
    const char *g[] = { "ok\xED\xA0\x80" };           /* surrogate */
    const char *h[] = { "\xF0\x9F", "A" };            /* broken across fragments */
    const char *i[] = { "\xF4\x90\x80\x80" };         /* above U+10FFFF */
    const char *j[] = { "\xFF" };
    const char *k[] = { "ab", "c\xE2\x82" };          /* ends mid-character at FIN */
    const char *l[] = { "\xE2\x82" };
    CHECK_EQ(text_frags_err(f, 1), IY_EUTF8);
    CHECK_EQ(text_frags_err(g, 1), IY_EUTF8);
    CHECK_EQ(text_frags_err(h, 2), IY_EUTF8);
    CHECK_EQ(text_frags_err(i, 1), IY_EUTF8);
    CHECK_EQ(text_frags_err(j, 1), IY_EUTF8);
    CHECK_EQ(text_frags_err(k, 2), IY_EUTF8);
    CHECK_EQ(text_frags_err(l, 1), IY_EUTF8);

    /* Rejected as soon as the bad byte arrives, before the message ends. */
    {
        iy_buf b = { 0 };
        result res;
        frame(&b, WS_OP_TEXT, 0, "fine\xFF");
        run_all(b.data, b.len, 1000, &res);
        CHECK_EQ(res.err, IY_EUTF8);
        result_free(&res);
        iy_buf_free(&b);
    }
    /* Binary is not validated. */
    CHECK_EQ(one_frame_err(WS_OP_BINARY, 1, "\xFF\xC0", 2, MASK, 100), 0);
}

static void test_errors(void)
{
    static const uint8_t top_bit[] = { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4 };
    char big[126];
    iy_buf b = { 0 };
    result res;

    memset(big, 'x', sizeof big);
    CHECK_EQ(one_frame_err(WS_OP_TEXT, 1, "hi", 2, NULL, 100), IY_EPROTO);       /* unmasked */
    CHECK_EQ(one_frame_err(WS_OP_PING, 1, "", 0, NULL, 100), IY_EPROTO);
    CHECK_EQ(one_frame_err(WS_OP_TEXT | 0x40, 1, "hi", 2, MASK, 100), IY_EPROTO); /* RSV1 */
    CHECK_EQ(one_frame_err(WS_OP_TEXT | 0x20, 1, "hi", 2, MASK, 100), IY_EPROTO); /* RSV2 */
    CHECK_EQ(one_frame_err(WS_OP_PING | 0x10, 1, "hi", 2, MASK, 100), IY_EPROTO); /* RSV3 */
    for (int op = 3; op < 16; op++) {
        if (op >= 8 && op <= 10) continue;
        CHECK_EQ(one_frame_err(op, 1, "hi", 2, MASK, 100), IY_EPROTO);            /* unknown */
    }
    CHECK_EQ(one_frame_err(WS_OP_PING, 1, big, 125, MASK, 100), 0);
    CHECK_EQ(one_frame_err(WS_OP_PING, 1, big, 126, MASK, 1000), IY_EPROTO);     /* control > 125 */
    CHECK_EQ(one_frame_err(WS_OP_PONG, 1, big, 126, MASK, 1000), IY_EPROTO);
    CHECK_EQ(one_frame_err(WS_OP_CLOSE, 1, big, 126, MASK, 1000), IY_EPROTO);
    CHECK_EQ(one_frame_err(WS_OP_PING, 0, "hi", 2, MASK, 100), IY_EPROTO);      /* fragmented control */
    CHECK_EQ(one_frame_err(WS_OP_CLOSE, 0, "", 0, MASK, 100), IY_EPROTO);
    CHECK_EQ(one_frame_err(WS_OP_CONT, 1, "hi", 2, MASK, 100), IY_EPROTO);      /* nothing to continue */
    CHECK_EQ(one_frame_err(WS_OP_CONT, 0, "hi", 2, MASK, 100), IY_EPROTO);

    run_all(top_bit, sizeof top_bit, 100, &res);                                 /* 64-bit top bit */
    CHECK_EQ(res.err, IY_EPROTO);
    result_free(&res);

    /* A new data frame while a fragmented message is in progress. */
    frame(&b, WS_OP_TEXT, 0, "a");
    frame(&b, WS_OP_TEXT, 1, "b");
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == IY_EPROTO && res.n == 0);
    result_free(&res);
    iy_buf_reset(&b);
    frame(&b, WS_OP_BINARY, 0, "a");
    frame(&b, WS_OP_PING, 1, "");
    frame(&b, WS_OP_TEXT, 1, "b");
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == IY_EPROTO && res.n == 1 && res.ev[0].kind == WS_PING);
    result_free(&res);
    iy_buf_reset(&b);
    /* A continuation after a completed message. */
    frame(&b, WS_OP_TEXT, 1, "a");
    frame(&b, WS_OP_CONT, 1, "b");
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == IY_EPROTO && res.n == 1);
    result_free(&res);
    iy_buf_free(&b);

    CHECK_EQ(ws_close_code_for(IY_EPROTO), 1002);
    CHECK_EQ(ws_close_code_for(IY_EUTF8), 1007);
    CHECK_EQ(ws_close_code_for(IY_ETOOBIG), 1009);
    CHECK_EQ(ws_close_code_for(IY_ENOMEM), 1011);
    CHECK_EQ(ws_close_code_for(IY_EIO), 1011);
}

static void test_max_message(void)
{
    char p[200];
    iy_buf b = { 0 };
    result res;
    memset(p, 'm', sizeof p);

    CHECK_EQ(one_frame_err(WS_OP_TEXT, 1, p, 100, MASK, 100), 0);
    CHECK_EQ(one_frame_err(WS_OP_TEXT, 1, p, 101, MASK, 100), IY_ETOOBIG);
    CHECK_EQ(one_frame_err(WS_OP_BINARY, 0, p, 101, MASK, 100), IY_ETOOBIG);
    CHECK_EQ(one_frame_err(WS_OP_BINARY, 1, p, 1, MASK, 0), IY_ETOOBIG);
    CHECK_EQ(one_frame_err(WS_OP_BINARY, 1, p, 0, MASK, 0), 0);
    /* Control frames are bounded by 125, not by max_message. */
    CHECK_EQ(one_frame_err(WS_OP_PING, 1, p, 50, MASK, 10), 0);

    /* The total over fragments counts. */
    ws_client_frame_append(&b, WS_OP_TEXT, 0, p, 60, MASK);
    ws_client_frame_append(&b, WS_OP_CONT, 0, p, 40, MASK);
    ws_client_frame_append(&b, WS_OP_CONT, 1, p, 0, MASK);
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == 0 && res.n == 1 && res.ev[0].len == 100);
    result_free(&res);
    iy_buf_reset(&b);
    ws_client_frame_append(&b, WS_OP_TEXT, 0, p, 60, MASK);
    ws_client_frame_append(&b, WS_OP_CONT, 1, p, 41, MASK);
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == IY_ETOOBIG && res.n == 0);
    result_free(&res);
    iy_buf_reset(&b);

    /* Detected from the header alone, before any payload arrives. */
    {
        static const uint8_t h16[] = { 0x82, 0xFE, 0xFF, 0xFF, 1, 2, 3, 4 };
        static const uint8_t h64[] = { 0x81, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4 };
        run_all(h16, sizeof h16, 1000, &res);
        CHECK_EQ(res.err, IY_ETOOBIG);
        result_free(&res);
        run_all(h64, sizeof h64, (size_t)1 << 40, &res);  /* clamped to 1 GiB */
        CHECK_EQ(res.err, IY_ETOOBIG);
        result_free(&res);
    }
    iy_buf_free(&b);
}

static void close_frame(iy_buf *b, uint16_t code, const char *reason)
{
    uint8_t p[125];
    size_t n = strlen(reason);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, n);
    ws_client_frame_append(b, WS_OP_CLOSE, 1, p, 2 + n, MASK);
}

static int close_err(uint16_t code, const char *reason, uint16_t *got)
{
    iy_buf b = { 0 };
    result res;
    int err;
    close_frame(&b, code, reason);
    run_all(b.data, b.len, 100, &res);
    err = res.err;
    if (!err && res.n == 1) *got = res.ev[0].code;
    result_free(&res);
    iy_buf_free(&b);
    return err;
}

static void test_close(void)
{
    static const uint16_t good[] = { 1000, 1001, 1003, 1007, 1011, 1014, 3000, 4000, 4999 };
    static const uint16_t bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535 };
    iy_buf b = { 0 };
    result res;
    uint16_t got;

    close_frame(&b, 1000, "bye");
    run_all(b.data, b.len, 100, &res);
    CHECK(res.err == 0 && res.n == 1 && res.ev[0].kind == WS_CLOSE);
    CHECK_EQ(res.ev[0].code, 1000);
    CHECK_MEM(res.ev[0].data, res.ev[0].len, "bye");
    result_free(&res);
    iy_buf_free(&b);

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        got = 0;
        CHECK_EQ(close_err(good[i], "", &got), 0);
        CHECK_EQ(got, good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECK_EQ(close_err(bad[i], "", &got), IY_EPROTO);
    CHECK_EQ(close_err(1000, "caf\xC3\xA9", &got), 0);
    CHECK_EQ(close_err(1000, "caf\xC3", &got), IY_EUTF8);

    /* Empty close: code 1005, no reason. Length 1: protocol error. */
    CHECK_EQ(one_frame_err(WS_OP_CLOSE, 1, "", 0, MASK, 100), 0);
    ws_client_frame_append(&b, WS_OP_CLOSE, 1, "", 0, MASK);
    run_all(b.data, b.len, 100, &res);
    CHECK(res.n == 1 && res.ev[0].kind == WS_CLOSE && res.ev[0].code == 1005 && res.ev[0].len == 0);
    result_free(&res);
    iy_buf_free(&b);
    CHECK_EQ(one_frame_err(WS_OP_CLOSE, 1, "\x03", 1, MASK, 100), IY_EPROTO);
}

static void test_writers(void)
{
    uint8_t h[10];
    iy_buf b = { 0 };
    CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, 0), 2);
    CHECK_MEM(h, 2, "\x81\x00");
    CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, 125), 2);
    CHECK_MEM(h, 2, "\x81\x7D");
    CHECK_EQ(ws_frame_header(h, WS_OP_BINARY, 126), 4);
    CHECK_MEM(h, 4, "\x82\x7E\x00\x7E");
    CHECK_EQ(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
    CHECK_MEM(h, 4, "\x82\x7E\xFF\xFF");
    CHECK_EQ(ws_frame_header(h, WS_OP_TEXT, 65536), 10);
    CHECK_MEM(h, 10, "\x81\x7F\x00\x00\x00\x00\x00\x01\x00\x00");
    CHECK_EQ(ws_frame_header(h, WS_OP_PING, 0x0102030405060708ull), 10);
    CHECK_MEM(h, 10, "\x89\x7F\x01\x02\x03\x04\x05\x06\x07\x08");

    ws_frame_append(&b, WS_OP_TEXT, "hi", 2);
    CHECK_MEM(b.data, b.len, "\x81\x02hi");
    iy_buf_reset(&b);
    ws_close_append(&b, 1000, NULL);
    CHECK_MEM(b.data, b.len, "\x88\x02\x03\xE8");
    iy_buf_reset(&b);
    ws_close_append(&b, 1009, "too big");
    CHECK_MEM(b.data, b.len, "\x88\x09\x03\xF1too big");
    iy_buf_reset(&b);
    ws_close_append(&b, 1005, "ignored");
    CHECK_MEM(b.data, b.len, "\x88\x00");
    iy_buf_reset(&b);
    {
        char r[300];
        memset(r, 'r', 299);
        r[299] = 0;
        ws_close_append(&b, 1000, r);
        CHECK_EQ(b.len, 127);
        CHECK_EQ((uint8_t)b.data[1], 125);
        iy_buf_reset(&b);
        for (int i = 0; i < 100; i++) memcpy(r + 2 * i, "\xC3\xA9", 2);   /* 100 x U+00E9 */
        r[200] = 0;
        ws_close_append(&b, 1000, r);
        CHECK_EQ((uint8_t)b.data[1], 124);                         /* 61 chars, not 61.5 */
        CHECK_EQ(iy_utf8_validate(b.data + 4, b.len - 4), 0);
        iy_buf_reset(&b);
    }
    /* Client frames: masked bit and mask placement. */
    ws_client_frame_append(&b, WS_OP_PING, 1, "", 0, MASK);
    CHECK_MEM(b.data, b.len, "\x89\x80\x37\xfa\x21\x3d");
    iy_buf_reset(&b);
    ws_client_frame_append(&b, WS_OP_TEXT, 0, "ab", 2, NULL);
    CHECK_MEM(b.data, b.len, "\x01\x02" "ab");
    iy_buf_free(&b);
}

static void test_accept_key(void)
{
    char out[29];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    memset(out, 'z', sizeof out);
    CHECK_EQ(ws_accept_key(key, 24, out), 0);
    /* RFC 6455 1.3 (checked with `openssl sha1 -binary | base64`). */
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0);
    CHECK_EQ(ws_accept_key(key, 23, out), IY_EINVAL);
    CHECK_EQ(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=x", 24, out), IY_EINVAL);
    CHECK_EQ(ws_accept_key("dGhlIHNhbXBsZSBub25j*Q==", 24, out), IY_EINVAL);
    CHECK_EQ(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", 25, out), IY_EINVAL);
    CHECK_EQ(ws_accept_key("", 0, out), IY_EINVAL);
}

/* ws_reader_idle: 1 exactly when nothing of a frame or message is pending
 * (the transport frees an idle connection's reader and starts a new one). */
static void test_idle(void)
{
    iy_buf b = { 0 };
    ws_reader *r = ws_reader_new(100);
    size_t used;
    ws_event ev;
    CHECK(ws_reader_idle(r));
    frame(&b, WS_OP_TEXT, 1, "hello");
    /* Byte by byte: not idle until the frame is complete. */
    for (size_t i = 0; i < b.len; i++) {
        CHECK_EQ(ws_reader_feed(r, (uint8_t *)b.data + i, 1, &used, &ev), 0);
        CHECK_EQ(used, 1);
        CHECK_EQ(ws_reader_idle(r), i + 1 == b.len);
    }
    CHECK_EQ(ev.kind, WS_TEXT);
    iy_buf_reset(&b);
    /* A fragmented message: not idle between its fragments. */
    frame(&b, WS_OP_TEXT, 0, "Hel");
    CHECK_EQ(ws_reader_feed(r, (uint8_t *)b.data, b.len, &used, &ev), 0);
    CHECK_EQ(ev.kind, WS_NONE);
    CHECK(!ws_reader_idle(r));
    iy_buf_reset(&b);
    frame(&b, WS_OP_CONT, 1, "lo");
    CHECK_EQ(ws_reader_feed(r, (uint8_t *)b.data, b.len, &used, &ev), 0);
    CHECK_EQ(ev.kind, WS_TEXT);
    CHECK_MEM(ev.data, ev.len, "Hello");
    CHECK(ws_reader_idle(r));
    ws_reader_free(r);
    iy_buf_free(&b);
}

int main(void)
{
    test_idle();
    test_masking();
    test_lengths();
    test_stream();
    test_fragments();
    test_utf8();
    test_errors();
    test_max_message();
    test_close();
    test_writers();
    test_accept_key();
    return T_DONE("ws");
}
