/* fuzz_proto.c — libFuzzer target for the JSON protocol codec.
 *
 * Feeds arbitrary bytes to proto_parse() and always clears the request. When
 * a frame parses, the parts that go back out are re-encoded and decoded again
 * with jansson: a send's text through jw_str must come back byte for byte,
 * and the error frame echoing the rid must be valid JSON. Any mismatch
 * aborts, which libFuzzer reports as a crash. */
#include "base/buf.h"
#include "base/limits.h"
#include "codec/jsonw.h"
#include "codec/proto.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Decodes b as one JSON value; aborts unless it is a string equal to s[0..n). */
static void fuzz__same_string(const iy_buf *b, const char *s, size_t n)
{
    json_t *j = json_loadb(b->data, b->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!j || !json_is_string(j) || json_string_length(j) != n
        || memcmp(json_string_value(j), s, n) != 0)
        abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    proto_req r;
    char errmsg[128];
    iy_buf b = { 0 };

    int rc = proto_parse((const char *)data, size, &r, errmsg, sizeof errmsg);
    if (rc != 0) {
        /* Error frames carry errmsg and the echoed rid; both must encode to valid JSON. */
        proto_write_error(&b, r.has_rid ? r.rid : NULL, "bad_request", errmsg);
        json_t *j = json_loadb(b.data, b.len, 0, NULL);
        if (!j) abort();
        json_decref(j);
    } else {
        if (r.op < P_AUTH || r.op > P_REACT) abort();
        if (r.op == P_SEND || r.op == P_EDIT) {
            if (!r.text || r.text[r.text_len] != '\0') abort();
            if (r.op == P_SEND && (r.to != 0) == (r.channel != 0)) abort();
            if (r.op == P_EDIT && r.id == 0) abort();
            jw_str(&b, r.text, r.text_len);
            fuzz__same_string(&b, r.text, r.text_len);
        }
        if (r.op == P_DELETE && (r.id == 0 || r.text)) abort();
        if (r.op == P_REACT && (r.id == 0 || !r.text || proto_check_emoji(r.text, r.text_len) != 0)) abort();
        if (r.op == P_PRESENCE && (r.nusers == 0 || r.nusers > IY_PRESENCE_QUERY_MAX)) abort();
        if (r.has_rid) {
            iy_buf_reset(&b);
            jw_cstr(&b, r.rid);
            fuzz__same_string(&b, r.rid, strlen(r.rid));
        }
    }
    proto_req_clear(&r);
    iy_buf_free(&b);
    return 0;
}
