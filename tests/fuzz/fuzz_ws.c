/* fuzz_ws.c — libFuzzer target for the WebSocket reader.
 *
 * Input layout: bytes 0..3 pick the chunk sizes the stream is fed in (so
 * every split of a header or payload gets explored), byte 4 picks
 * max_message, the rest is the client byte stream. Two checks:
 *   1. arbitrary bytes: the reader never crashes, leaks, over-reads, or
 *      breaks its contract (consumed in range, events valid, text UTF-8);
 *   2. round trip: the same bytes, used as a payload, encoded as fragments
 *      with ws_client_frame_append (a ping between fragments), parse back to
 *      exactly that payload (or IY_EUTF8 for a text payload that is not). */
#include "codec/ws.h"
#include "base/err.h"
#include "base/utf8.h"
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static size_t chunk_at(const uint8_t sel[4], size_t i)
{
    return (size_t)(sel[i & 3] & 0x3f) + 1;      /* 1..64 */
}

/* Feeds data[0..len) in chunks; calls back nothing, checks the contract and
 * returns the error (0 if none). Events are stored in *evs (copies). */
typedef struct fz_events {
    int n, pings, other;
    ws_kind kind;            /* last data message */
    uint8_t *msg;
    size_t msg_len;
} fz_events;

static int feed(ws_reader *r, uint8_t *data, size_t len, const uint8_t sel[4], fz_events *out)
{
    size_t off = 0, k = 0;
    unsigned sum = 0;
    while (off < len) {
        size_t end = off + chunk_at(sel, k++);
        if (end > len) end = len;
        while (off < end) {
            size_t used;
            ws_event ev;
            int rc = ws_reader_feed(r, data + off, end - off, &used, &ev);
            if (rc < 0) {
                CHECK(rc == IY_EPROTO || rc == IY_EUTF8 || rc == IY_ETOOBIG || rc == IY_ENOMEM);
                CHECK(ev.kind == WS_NONE);
                CHECK(ws_reader_feed(r, data + off, end - off, &used, &ev) == rc);
                return rc;
            }
            CHECK(used <= end - off);
            off += used;
            if (ev.kind == WS_NONE) {
                CHECK(off == end);
                break;
            }
            CHECK(ev.data != NULL);
            for (size_t i = 0; i < ev.len; i++) sum += ev.data[i];   /* touch every byte */
            out->n++;
            switch (ev.kind) {
            case WS_TEXT:
                CHECK(iy_utf8_validate((const char *)ev.data, ev.len) == 0);
                /* fall through */
            case WS_BINARY:
                free(out->msg);
                out->msg = malloc(ev.len ? ev.len : 1);
                memcpy(out->msg, ev.data, ev.len);
                out->msg_len = ev.len;
                out->kind = ev.kind;
                break;
            case WS_PING: out->pings++; CHECK(ev.len <= 125); break;
            case WS_CLOSE:
                CHECK(ev.len <= 123);
                CHECK(ev.close_code == 1005 || (ev.close_code >= 1000 && ev.close_code < 5000));
                CHECK(iy_utf8_validate((const char *)ev.data, ev.len) == 0);
                out->other++;
                break;
            default: out->other++; break;
            }
        }
    }
    (void)sum;
    return 0;
}

static void roundtrip(const uint8_t *p, size_t n, const uint8_t sel[4], size_t max)
{
    const uint8_t mask[4] = { sel[0], sel[1] ^ 0x5a, sel[2], sel[3] ^ 0xa5 };
    int text = (sel[0] & 0x80) != 0;
    size_t frags = (size_t)(sel[1] & 3) + 1, off = 0;
    iy_buf b = { 0 };
    fz_events evs = { 0 };
    ws_reader *r = ws_reader_new(max);
    int rc;

    for (size_t i = 0; i < frags; i++) {
        size_t take = i + 1 == frags ? n - off : (n - off) / 2;
        ws_client_frame_append(&b, i == 0 ? (text ? WS_OP_TEXT : WS_OP_BINARY) : WS_OP_CONT,
                               i + 1 == frags, p + off, take, mask);
        off += take;
        if (i == 0 && frags > 1) ws_client_frame_append(&b, WS_OP_PING, 1, p, n < 125 ? n : 125, mask);
    }
    rc = feed(r, (uint8_t *)b.data, b.len, sel, &evs);
    if (n > max) {
        /* A bad byte in an earlier fragment may be seen before the size. */
        CHECK(rc == IY_ETOOBIG || (text && rc == IY_EUTF8));
    } else if (text && iy_utf8_validate((const char *)p, n) != 0) {
        CHECK(rc == IY_EUTF8);
    } else {
        CHECK(rc == 0);
        CHECK(evs.pings == (frags > 1));
        CHECK(evs.kind == (text ? WS_TEXT : WS_BINARY));
        CHECK(evs.msg_len == n && memcmp(evs.msg, p, n) == 0);
    }
    free(evs.msg);
    ws_reader_free(r);
    iy_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t maxes[] = { 0, 1, 16, 125, 200, 1000, 4096, 70000 };
    uint8_t sel[4];
    size_t max, n;
    uint8_t *copy;
    ws_reader *r;
    fz_events evs = { 0 };

    if (size < 5) return 0;
    memcpy(sel, data, 4);
    max = maxes[data[4] & 7];
    data += 5;
    n = size - 5;

    copy = malloc(n ? n : 1);              /* the reader unmasks in place */
    memcpy(copy, data, n);
    r = ws_reader_new(max);
    (void)feed(r, copy, n, sel, &evs);
    free(evs.msg);
    ws_reader_free(r);
    free(copy);

    roundtrip(data, n, sel, max);
    return 0;
}
