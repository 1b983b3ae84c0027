/* fuzz_http.c — libFuzzer target for the HTTP request codec.
 *
 * The first bytes of the input choose the limits and the sizes of the
 * pieces the rest is fed in, so that every span of llhttp gets cut at
 * every place. Requests are taken one at a time as a connection would
 * (http_parser_next between them) and their fields are pushed through
 * http_query_get and http_path_split. Invariants checked: consumed never
 * exceeds what was fed, a failed parser reports 400/413/431, fields are
 * within the limits, and the input parsed whole and parsed in pieces gives
 * the same requests and the same outcome. */
#include "codec/http.h"
#include "base/err.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_CHECK(c) do { if (!(c)) abort(); } while (0)

static void touch(iy_str s)
{
    volatile unsigned char x = 0;
    for (size_t i = 0; i < s.len; i++) x ^= (unsigned char)s.ptr[i];
    (void)x;
}

static void use_request(const http_request *q, size_t max_body)
{
    static const char *const names[] = { "limit", "after", "before_seq", "users", "wait", "" };
    char out[32];
    iy_str seg[8];

    touch(q->path);
    touch(q->query);
    touch(q->authorization);
    touch(q->content_type);
    touch(q->host);
    touch(q->upgrade);
    touch(q->connection);
    touch(q->ws_key);
    touch(q->ws_version);
    touch(q->origin);
    touch((iy_str){ q->body, q->body_len });
    FUZZ_CHECK(q->body_len <= max_body);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int rc = http_query_get(q->query, names[i], out, sizeof out);
        FUZZ_CHECK(rc == 0 || rc == 1 || rc == IY_EINVAL);
        if (rc == 1) FUZZ_CHECK(strlen(out) < sizeof out);
    }
    int n = http_path_split(q->path, seg, 8);
    FUZZ_CHECK(n == IY_EINVAL || (n >= 0 && n <= 8));
    for (int i = 0; i < n; i++) FUZZ_CHECK(seg[i].len > 0);
}

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return (h ^ n) * 1099511628211ull;
}

static uint64_t mix_str(uint64_t h, iy_str s) { return mix(h, s.ptr, s.len); }

static uint64_t digest(uint64_t h, const http_request *q, size_t at)
{
    int v[3] = { q->method, q->keep_alive, q->websocket };
    h = mix(h, v, sizeof v);
    h = mix(h, &at, sizeof at);
    h = mix_str(h, q->path);
    h = mix_str(h, q->query);
    h = mix_str(h, q->authorization);
    h = mix_str(h, q->content_type);
    h = mix_str(h, q->host);
    h = mix_str(h, q->upgrade);
    h = mix_str(h, q->connection);
    h = mix_str(h, q->ws_key);
    h = mix_str(h, q->ws_version);
    h = mix_str(h, q->origin);
    return mix(h, q->body, q->body_len);
}

/* Parses in[0..len) as a connection would, in pieces (cut != 0) or whole,
 * and returns a digest of every request and of how it ended. */
static uint64_t run(const char *in, size_t len, size_t max_head, size_t max_body, size_t seed, int cut)
{
    uint64_t h = 14695981039346656037ull;
    size_t off = 0, pieces = 0;
    int rc = 0, st = 0;

    http_parser *p = http_parser_new(max_head, max_body);
    /* seed & 4: heads are told first (uploads); seed & 8: their bodies are
     * then streamed, up to 4 max_body + 1, and must come out whole. */
    int told = 0, streaming = 0;
    iy_buf sbody = { 0 };
    if (seed & 4) http_parser_set_head_stop(p, 1);
    while (off < len) {
        /* Piece sizes from the input itself: 1..64 bytes. */
        size_t n = len - off;
        if (cut) {
            size_t k = ((unsigned char)in[(off + seed) % len] + pieces * seed) % 64 + 1;
            if (k < n) n = k;
        }
        pieces++;
        size_t used = 0;
        const http_request *q = NULL;
        rc = http_parser_feed(p, in + off, n, &used, &q);
        if (rc < 0) {
            st = http_parser_error_status(p);
            FUZZ_CHECK(rc == IY_EPROTO || rc == IY_ETOOBIG);
            FUZZ_CHECK(rc == IY_EPROTO ? st == 400 : (st == 413 || st == 431));
            break;
        }
        FUZZ_CHECK(used <= n);
        off += used;
        size_t cl = 0;
        const char *chunk = http_parser_body_chunk(p, &cl);
        if (chunk) {
            FUZZ_CHECK(streaming && cl > 0);
            iy_buf_append(&sbody, chunk, cl);
            FUZZ_CHECK(sbody.len <= max_body * 4 + 1);
        }
        if (!q) {
            const http_request *hd = http_parser_head(p);
            if (hd && !told) {
                FUZZ_CHECK(seed & 4);
                told = 1;
                use_request(hd, max_body);
                h = mix_str(h, hd->path);
                if (seed & 8) {
                    int r2 = http_parser_stream_body(p, max_body * 4 + 1);
                    if (r2) {
                        rc = r2;
                        st = http_parser_error_status(p);
                        FUZZ_CHECK(r2 == IY_ETOOBIG && st == 413);
                        break;
                    }
                    streaming = 1;
                }
                continue;
            }
            FUZZ_CHECK(used == n);
            continue;
        }
        use_request(q, max_body);
        h = digest(h, q, off);
        FUZZ_CHECK(q->streamed == streaming);
        if (streaming) {
            FUZZ_CHECK(q->body_len == 0);
            h = mix(h, sbody.data, sbody.len);
        }
        iy_buf_reset(&sbody);
        told = streaming = 0;
        /* Feeding again before next() must hand back the same request. */
        const http_request *again = NULL;
        size_t used2 = 1;
        FUZZ_CHECK(http_parser_feed(p, in + off, len - off, &used2, &again) == 0);
        FUZZ_CHECK(again == q && used2 == 0);
        if (q->websocket && (seed & 2)) break;   /* the connection switched protocols */
        http_parser_next(p);
    }
    http_parser_free(p);
    iy_buf_free(&sbody);
    int end[2] = { rc, st };
    return mix(h, end, sizeof end);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    size_t max_head = 64 + (size_t)data[0] * 4;     /* 64..1084 */
    size_t max_body = (size_t)data[1] * 8;          /* 0..2040 */
    size_t seed = data[2];
    const char *in = (const char *)data + 3;
    size_t len = size - 3;

    /* However the bytes are cut, the requests and the outcome are the same. */
    uint64_t whole = run(in, len, max_head, max_body, seed, 0);
    uint64_t cut = run(in, len, max_head, max_body, seed, 1);
    FUZZ_CHECK(whole == cut);
    return 0;
}
