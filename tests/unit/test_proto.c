/* test_proto.c — the JSON protocol codec: every op, every validation error
 * with its code and rid echo, the text limits in code points, ids, string
 * escaping, the encoders' exact output, and every prefix of a valid frame. */
#include "t.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/limits.h"
#include "codec/jsonw.h"
#include "codec/proto.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

static char errmsg[256];

static int parse(const char *frame, proto_req *r)
{
    return proto_parse(frame, strlen(frame), r, errmsg, sizeof errmsg);
}

/* Parses frame, expects err, a message, and the rid "x" echoed if echo. */
static void expect_err(int line, const char *frame, int err, int echo)
{
    proto_req r;
    int before = t_fail;
    int rc = parse(frame, &r);
    CHECK_EQ(rc, err);
    CHECK(errmsg[0] != '\0');
    if (echo) CHECK(r.has_rid && strcmp(r.rid, "x") == 0);
    else CHECK(!r.has_rid);
    if (t_fail != before)
        fprintf(stderr, "  (line %d) frame %.200s -> %d \"%s\"\n", line, frame, rc, errmsg);
    proto_req_clear(&r);
}
#define EXPECT_ERR(frame, err, echo) expect_err(__LINE__, (frame), (err), (echo))

static void expect_ok(int line, const char *frame)
{
    proto_req r;
    int rc = parse(frame, &r);
    CHECK_EQ(rc, 0);
    if (rc) fprintf(stderr, "  (line %d) frame %.200s -> %d \"%s\"\n", line, frame, rc, errmsg);
    proto_req_clear(&r);
}
#define EXPECT_OK(frame) expect_ok(__LINE__, (frame))

/* ---- every op with all its fields ------------------------------------ */

static void test_ops(void)
{
    proto_req r;

    CHECK_EQ(parse("{\"op\":\"auth\",\"rid\":\"r1\",\"token\":\"tok-123\"}", &r), 0);
    CHECK_EQ(r.op, P_AUTH);
    CHECK(r.has_rid && strcmp(r.rid, "r1") == 0);
    CHECK(strcmp(r.token, "tok-123") == 0);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"send\",\"rid\":\"2\",\"to\":\"18446744073709551615\","
                   "\"text\":\"hi \\\"there\\\"\",\"cmid\":\"c-1\",\"extra\":[1,{}]}", &r), 0);
    CHECK_EQ(r.op, P_SEND);
    CHECK(r.to == UINT64_MAX && r.channel == 0);
    CHECK_MEM(r.text, r.text_len, "hi \"there\"");
    CHECK(r.text[r.text_len] == '\0');
    CHECK(r.has_cmid && strcmp(r.cmid, "c-1") == 0);
    proto_req_clear(&r);
    CHECK(r.text == NULL && r.op == 0);

    CHECK_EQ(parse("{\"op\":\"send\",\"channel\":\"42\",\"text\":\"a\\u0000b\"}", &r), 0);
    CHECK(r.channel == 42 && r.to == 0 && !r.has_rid && !r.has_cmid);
    CHECK_MEM(r.text, r.text_len, "a\0b");
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"send\",\"channel\":\"42\",\"to\":null,\"text\":\"x\",\"cmid\":null,\"rid\":null}", &r), 0);
    CHECK(r.channel == 42 && !r.has_cmid && !r.has_rid);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"sync\",\"rid\":\"s\",\"after\":9007199254740992,\"limit\":500}", &r), 0);
    CHECK_EQ(r.op, P_SYNC);
    CHECK(r.after == 9007199254740992ULL);
    CHECK_EQ(r.limit, 500);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"sync\"}", &r), 0);
    CHECK(r.after == 0);
    CHECK_EQ(r.limit, IY_SYNC_DEFAULT);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"history\",\"channel\":\"5\",\"before_seq\":100,\"limit\":200}", &r), 0);
    CHECK_EQ(r.op, P_HISTORY);
    CHECK(r.channel == 5 && r.has_before && r.before_seq == 100 && !r.has_after);
    CHECK_EQ(r.limit, 200);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"history\",\"channel\":\"5\",\"after_seq\":0}", &r), 0);
    CHECK(r.has_after && r.after_seq == 0 && !r.has_before && !r.has_around);
    CHECK_EQ(r.limit, IY_PAGE_DEFAULT);
    proto_req_clear(&r);
    CHECK_EQ(parse("{\"op\":\"send\",\"channel\":\"5\",\"text\":\"re\",\"reply_to\":\"76\"}", &r), 0);
    CHECK(r.op == P_SEND && r.reply_to == 76 && r.channel == 5);
    proto_req_clear(&r);
    CHECK_EQ(parse("{\"op\":\"react\",\"id\":\"77\",\"emoji\":\"\\ud83d\\udc4d\",\"on\":false}", &r), 0);
    CHECK(r.op == P_REACT && r.id == 77 && r.on == 0 && r.text_len == 4);
    proto_req_clear(&r);
    CHECK_EQ(parse("{\"op\":\"react\",\"id\":\"77\",\"emoji\":\"ok\"}", &r), 0);
    CHECK(r.op == P_REACT && r.on == 1);
    proto_req_clear(&r);
    CHECK_EQ(parse("{\"op\":\"edit\",\"id\":\"77\",\"text\":\"new\"}", &r), 0);
    CHECK(r.op == P_EDIT && r.id == 77 && r.text_len == 3 && strcmp(r.text, "new") == 0);
    proto_req_clear(&r);
    CHECK_EQ(parse("{\"op\":\"delete\",\"id\":\"78\",\"rid\":\"d\"}", &r), 0);
    CHECK(r.op == P_DELETE && r.id == 78 && r.has_rid && r.text == NULL);
    proto_req_clear(&r);
    CHECK_EQ(parse("{\"op\":\"history\",\"channel\":\"5\",\"around_seq\":42,\"limit\":9}", &r), 0);
    CHECK(r.has_around && r.around_seq == 42 && !r.has_after && !r.has_before && r.limit == 9);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"history\",\"channel\":\"5\"}", &r), 0);
    CHECK(!r.has_after && !r.has_before);
    CHECK_EQ(r.limit, IY_PAGE_DEFAULT);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"read\",\"rid\":\"\",\"channel\":\"77\",\"seq\":12}", &r), 0);
    CHECK_EQ(r.op, P_READ);
    CHECK(r.has_rid && r.rid[0] == '\0');
    CHECK(r.channel == 77 && r.seq == 12);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"typing\",\"channel\":\"8\"}", &r), 0);
    CHECK_EQ(r.op, P_TYPING);
    CHECK(r.channel == 8);
    proto_req_clear(&r);

    CHECK_EQ(parse("{\"op\":\"presence\",\"rid\":\"p\",\"users\":[\"1\",\"2\",\"3\"]}", &r), 0);
    CHECK_EQ(r.op, P_PRESENCE);
    CHECK(r.nusers == 3 && r.users[0] == 1 && r.users[1] == 2 && r.users[2] == 3);
    proto_req_clear(&r);
    CHECK(r.users == NULL && r.nusers == 0);

    CHECK_EQ(parse(" {\"op\":\"hb\"} \n", &r), 0);
    CHECK_EQ(r.op, P_HB);
    proto_req_clear(&r);

    /* errmsg may be absent. */
    CHECK_EQ(proto_parse("[]", 2, &r, NULL, 0), IY_EINVAL);
    proto_req_clear(&r);
}

/* ---- every validation error ------------------------------------------ */

static char *repeat(const char *pre, char c, size_t n, const char *post)
{
    size_t a = strlen(pre), z = strlen(post);
    char *s = malloc(a + n + z + 1);
    memcpy(s, pre, a);
    memset(s + a, c, n);
    memcpy(s + a + n, post, z + 1);
    return s;
}

static void test_errors(void)
{
    char *f;

    /* Not an object, not JSON. */
    EXPECT_ERR("", IY_EINVAL, 0);
    EXPECT_ERR("[]", IY_EINVAL, 0);
    EXPECT_ERR("1", IY_EINVAL, 0);
    EXPECT_ERR("\"op\"", IY_EINVAL, 0);
    EXPECT_ERR("null", IY_EINVAL, 0);
    EXPECT_ERR("{\"op\":\"hb\"", IY_EINVAL, 0);
    EXPECT_ERR("{\"op\":\"hb\"} x", IY_EINVAL, 0);
    EXPECT_ERR("{\"op\":\"hb\",\"op\":\"hb\"}", IY_EINVAL, 0);
    EXPECT_ERR("{\"op\":\"hb\",\"n\":99999999999999999999999}", IY_EINVAL, 0);

    /* op. */
    EXPECT_ERR("{\"rid\":\"x\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"nope\"}", IY_EINVAL, 1);
    CHECK(strcmp(errmsg, "unknown op") == 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"hb\\u0000\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"HB\"}", IY_EINVAL, 1);

    /* rid. */
    f = repeat("{\"op\":\"hb\",\"rid\":\"", 'r', IY_RID_MAX + 1, "\"}");
    EXPECT_ERR(f, IY_ETOOBIG, 0);
    free(f);
    f = repeat("{\"op\":\"hb\",\"rid\":\"", 'r', IY_RID_MAX, "\"}");
    EXPECT_OK(f);
    free(f);
    EXPECT_ERR("{\"op\":\"hb\",\"rid\":7}", IY_EINVAL, 0);
    EXPECT_ERR("{\"op\":\"hb\",\"rid\":\"a\\u0000\"}", IY_EINVAL, 0);

    /* auth. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"auth\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"auth\",\"token\":\"\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"auth\",\"token\":5}", IY_EINVAL, 1);
    f = repeat("{\"rid\":\"x\",\"op\":\"auth\",\"token\":\"", 't', IY_TOKEN_MAX + 1, "\"}");
    EXPECT_ERR(f, IY_ETOOBIG, 1);
    free(f);
    f = repeat("{\"rid\":\"x\",\"op\":\"auth\",\"token\":\"", 't', IY_TOKEN_MAX, "\"}");
    EXPECT_OK(f);
    free(f);

    /* send. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"channel\":\"2\",\"text\":\"a\"}", IY_EINVAL, 1);
    CHECK(strcmp(errmsg, "send needs exactly one of to, channel") == 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"text\":\"a\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":1,\"text\":\"a\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"channel\":\"0\",\"text\":\"a\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":3}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":[\"a\"]}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":\"\"}", IY_EINVAL, 1);
    CHECK(strcmp(errmsg, "text must be 1 to 100000 code points") == 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":\"a\",\"cmid\":\"\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":\"a\",\"cmid\":12}", IY_EINVAL, 1);
    f = repeat("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":\"a\",\"cmid\":\"", 'c', IY_CMID_MAX + 1, "\"}");
    EXPECT_ERR(f, IY_ETOOBIG, 1);
    free(f);
    f = repeat("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"1\",\"text\":\"a\",\"cmid\":\"", 'c', IY_CMID_MAX, "\"}");
    EXPECT_OK(f);
    free(f);

    /* sync: integers only, 0..2^53, limit 1..500. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":-1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":1.5}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":1.0}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":1e3}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":\"5\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":true}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"after\":9007199254740993}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"limit\":0}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"limit\":501}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"limit\":-5}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"sync\",\"limit\":10.5}", IY_EINVAL, 1);
    EXPECT_OK("{\"op\":\"sync\",\"limit\":1}");

    /* history. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"before_seq\":5,\"after_seq\":1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"before_seq\":0}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"after_seq\":-1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"around_seq\":0}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"edit\",\"text\":\"no id\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"edit\",\"id\":\"5\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"edit\",\"id\":\"5\",\"text\":\"\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"edit\",\"id\":5,\"text\":\"x\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"delete\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"react\",\"id\":\"5\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"react\",\"id\":\"5\",\"emoji\":\"a b\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"react\",\"id\":\"5\",\"emoji\":\"\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"react\",\"id\":\"5\",\"emoji\":\"ok\",\"on\":1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"2\",\"text\":\"a\",\"reply_to\":7}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"2\",\"text\":\"a\",\"reply_to\":\"x\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"delete\",\"id\":\"0\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"around_seq\":3,\"after_seq\":1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"around_seq\":3,\"before_seq\":9}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"around_seq\":\"3\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"limit\":201}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"history\",\"channel\":\"1\",\"limit\":0}", IY_EINVAL, 1);

    /* read, typing. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"read\",\"channel\":\"1\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"read\",\"channel\":\"1\",\"seq\":-1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"read\",\"seq\":1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":8}", IY_EINVAL, 1);

    /* presence: 1..200 id strings. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"presence\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"presence\",\"users\":[]}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"presence\",\"users\":\"1\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"presence\",\"users\":[\"1\",2]}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"presence\",\"users\":[\"1\",\"01\"]}", IY_EINVAL, 1);
    {
        iy_buf b = { 0 };
        for (int n = IY_PRESENCE_QUERY_MAX; n <= IY_PRESENCE_QUERY_MAX + 1; n++) {
            iy_buf_reset(&b);
            iy_buf_append_str(&b, "{\"rid\":\"x\",\"op\":\"presence\",\"users\":[");
            for (int i = 0; i < n; i++) iy_buf_appendf(&b, "%s\"%d\"", i ? "," : "", i + 1);
            iy_buf_append_str(&b, "]}");
            if (n == IY_PRESENCE_QUERY_MAX) {
                proto_req r;
                CHECK_EQ(parse(iy_buf_cstr(&b), &r), 0);
                CHECK(r.nusers == IY_PRESENCE_QUERY_MAX && r.users[199] == 200);
                proto_req_clear(&r);
            } else {
                EXPECT_ERR(iy_buf_cstr(&b), IY_ETOOBIG, 1);
            }
        }
        iy_buf_free(&b);
    }

    /* A frame over the codec's size limit is refused before decoding. */
    {
        proto_req r;
        CHECK_EQ(proto_parse("{}", (size_t)IY_JSON_MAX + 1, &r, errmsg, sizeof errmsg), IY_ETOOBIG);
        proto_req_clear(&r);
    }
}

/* ---- text: code points, surrogates, invalid UTF-8 --------------------- */

static void test_text(void)
{
    static const char grin[] = "\xF0\x9F\x98\x80";   /* U+1F600, 4 bytes */
    iy_buf b = { 0 };
    proto_req r;

    for (int n = IY_TEXT_MAX_CP; n <= IY_TEXT_MAX_CP + 1; n++) {
        iy_buf_reset(&b);
        iy_buf_append_str(&b, "{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"");
        for (int i = 0; i < n; i++) iy_buf_append(&b, grin, 4);
        iy_buf_append_str(&b, "\"}");
        int rc = proto_parse(b.data, b.len, &r, errmsg, sizeof errmsg);
        if (n == IY_TEXT_MAX_CP) {
            CHECK_EQ(rc, 0);
            CHECK(r.text_len == (size_t)IY_TEXT_MAX_CP * 4);
            CHECK(memcmp(r.text + r.text_len - 4, grin, 4) == 0);
        } else {
            CHECK_EQ(rc, IY_ETOOBIG);
            CHECK(strcmp(errmsg, "text must be 1 to 100000 code points") == 0);
            CHECK(r.has_rid && strcmp(r.rid, "x") == 0);
        }
        proto_req_clear(&r);
    }

    /* The same limit with every character written as a surrogate-pair escape. */
    iy_buf_reset(&b);
    iy_buf_append_str(&b, "{\"op\":\"send\",\"to\":\"3\",\"text\":\"");
    for (int i = 0; i < IY_TEXT_MAX_CP; i++) iy_buf_append_str(&b, "\\ud83d\\ude00");
    iy_buf_append_str(&b, "\"}");
    CHECK(b.len <= IY_JSON_MAX);
    CHECK_EQ(proto_parse(b.data, b.len, &r, errmsg, sizeof errmsg), 0);
    CHECK(r.text_len == (size_t)IY_TEXT_MAX_CP * 4);
    proto_req_clear(&r);
    iy_buf_free(&b);

    CHECK_EQ(parse("{\"op\":\"send\",\"to\":\"3\",\"text\":\"\\ud83d\\ude00\"}", &r), 0);
    CHECK_MEM(r.text, r.text_len, "\xF0\x9F\x98\x80");
    proto_req_clear(&r);

    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"\\ud800\"}", IY_EINVAL, 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"a\\udc00\"}", IY_EINVAL, 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"\xFF\"}", IY_EINVAL, 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"\xC0\x80\"}", IY_EINVAL, 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"\xED\xA0\x80\"}", IY_EINVAL, 0);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"send\",\"to\":\"3\",\"text\":\"\xF0\x9F\x98\"}", IY_EINVAL, 0);

    /* proto_check_text directly (the HTTP API uses it on its own). */
    char big[IY_TEXT_MAX_CP + 1];
    memset(big, 'a', sizeof big);
    CHECK_EQ(proto_check_text(big, IY_TEXT_MAX_CP, errmsg, sizeof errmsg), 0);
    CHECK_EQ(proto_check_text(big, IY_TEXT_MAX_CP + 1, errmsg, sizeof errmsg), IY_ETOOBIG);
    CHECK_EQ(proto_check_text("", 0, errmsg, sizeof errmsg), IY_EINVAL);
    CHECK_EQ(proto_check_text("a\x80", 2, errmsg, sizeof errmsg), IY_EINVAL);
    CHECK(strcmp(errmsg, "text must be valid UTF-8") == 0);
    CHECK_EQ(proto_check_text("\0", 1, NULL, 0), 0);
    CHECK_EQ(proto_check_text("\xE2\x80\xA8", 3, NULL, 0), 0);
}

/* ---- ids --------------------------------------------------------------- */

static void test_ids(void)
{
    uint64_t v = 0;
    static const char *bad[] = { "", "0", "01", "-1", "+1", " 1", "1 ", "18446744073709551616",
                                 "99999999999999999999", "100000000000000000000", "abc", "1a", "1.0" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(proto_parse_id(bad[i], strlen(bad[i]), &v), IY_EINVAL);
        if (proto_parse_id(bad[i], strlen(bad[i]), &v) == 0) fprintf(stderr, "  id \"%s\"\n", bad[i]);
    }
    CHECK_EQ(proto_parse_id("1\0", 2, &v), IY_EINVAL);
    CHECK_EQ(proto_parse_id("18446744073709551615", 20, &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK_EQ(proto_parse_id("18446744073709551614", 20, &v), 0);
    CHECK(v == UINT64_MAX - 1);
    CHECK_EQ(proto_parse_id("7351042311118848001", 19, &v), 0);
    CHECK(v == 7351042311118848001ULL);
    CHECK_EQ(proto_parse_id("1", 1, &v), 0);
    CHECK(v == 1);
    CHECK_EQ(proto_parse_id("12345", 2, &v), 0);   /* only n bytes are read */
    CHECK(v == 12);

    /* In frames: strings only. */
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":\"0\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":\"01\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":\"-1\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":\"18446744073709551616\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":\"abc\"}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":42}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":4.2e1}", IY_EINVAL, 1);
    EXPECT_ERR("{\"rid\":\"x\",\"op\":\"typing\",\"channel\":{}}", IY_EINVAL, 1);
    EXPECT_OK("{\"op\":\"typing\",\"channel\":\"18446744073709551615\"}");
}

/* ---- jsonw ------------------------------------------------------------- */

static void test_jsonw(void)
{
    iy_buf b = { 0 };

#define STR_IS(in, inlen, out) do { \
    iy_buf_reset(&b); jw_str(&b, (in), (inlen)); CHECK_MEM(b.data, b.len, out); \
} while (0)
    STR_IS("", 0, "\"\"");
    STR_IS("plain", 5, "\"plain\"");
    STR_IS("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    STR_IS("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\"");
    STR_IS("\x01\x1f\0", 3, "\"\\u0001\\u001f\\u0000\"");
    STR_IS("/\x7f", 2, "\"/\x7f\"");
    STR_IS("\xE2\x80\xA8x\xE2\x80\xA9", 7, "\"\\u2028x\\u2029\"");
    STR_IS("\xE2\x80\xA7\xE2\x82\xAC", 6, "\"\xE2\x80\xA7\xE2\x82\xAC\"");   /* U+2027, euro sign */
    STR_IS("\xED\x95\x9C\xEA\xB8\x80 \xF0\x9F\x98\x80", 11, "\"\xED\x95\x9C\xEA\xB8\x80 \xF0\x9F\x98\x80\"");
    STR_IS("\xE2\x80", 2, "\"\xE2\x80\"");   /* truncated lead at the end: copied, no overread */
#undef STR_IS

    iy_buf_reset(&b);
    jw_cstr(&b, "q\"");
    CHECK_MEM(b.data, b.len, "\"q\\\"\"");

    iy_buf_reset(&b);
    jw_id(&b, 7351042311118848001ULL); iy_buf_putc(&b, ' ');
    jw_id(&b, 0); iy_buf_putc(&b, ' ');
    jw_u64(&b, UINT64_MAX); iy_buf_putc(&b, ' ');
    jw_u64(&b, 0); iy_buf_putc(&b, ' ');
    jw_i64(&b, -42); iy_buf_putc(&b, ' ');
    jw_i64(&b, INT64_MIN); iy_buf_putc(&b, ' ');
    jw_i64(&b, INT64_MAX); iy_buf_putc(&b, ' ');
    jw_key(&b, "k");
    CHECK_MEM(b.data, b.len, "\"7351042311118848001\" \"0\" 18446744073709551615 0 -42 "
                             "-9223372036854775808 9223372036854775807 \"k\":");

    /* Every single byte below 0x80 survives a jansson round trip. */
    for (int c = 0; c < 0x80; c++) {
        char ch = (char)c;
        iy_buf_reset(&b);
        jw_str(&b, &ch, 1);
        json_t *j = json_loadb(b.data, b.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        CHECK(j && json_is_string(j) && json_string_length(j) == 1 && json_string_value(j)[0] == ch);
        json_decref(j);
    }
    iy_buf_free(&b);
}

/* ---- encoders ---------------------------------------------------------- */

static void test_encoders(void)
{
    iy_buf b = { 0 };

    iy_user u = { .id = 7351042311118848001ULL, .username = "alice", .display_name = "Alice \"A\"" };
    proto_write_user(&b, &u);
    CHECK_MEM(b.data, b.len,
              "{\"id\":\"7351042311118848001\",\"username\":\"alice\",\"display_name\":\"Alice \\\"A\\\"\"}");

    iy_channel d = { .id = 10, .kind = IY_DIRECT, .nmembers = 2, .members = { 3, 4 } };
    iy_buf_reset(&b);
    proto_write_channel(&b, &d, 0);
    CHECK_MEM(b.data, b.len, "{\"id\":\"10\",\"kind\":\"direct\"}");
    iy_buf_reset(&b);
    proto_write_channel(&b, &d, 1);
    CHECK_MEM(b.data, b.len, "{\"id\":\"10\",\"kind\":\"direct\",\"members\":[\"3\",\"4\"]}");

    iy_channel g = { .id = 11, .kind = IY_GROUP, .name = "team", .owner = 3,
                     .nmembers = 3, .members = { 3, 4, 5 } };
    iy_buf_reset(&b);
    proto_write_channel(&b, &g, 1);
    CHECK_MEM(b.data, b.len,
              "{\"id\":\"11\",\"kind\":\"group\",\"name\":\"team\",\"members\":[\"3\",\"4\",\"5\"],\"owner\":\"3\"}");
    iy_buf_reset(&b);
    proto_write_channel(&b, &g, 0);
    CHECK_MEM(b.data, b.len, "{\"id\":\"11\",\"kind\":\"group\",\"name\":\"team\",\"owner\":\"3\"}");

    char text[] = "hi\n";
    iy_msg m = { .id = 99, .channel = 11, .seq = 5, .pos = 0, .from = 3, .ts = 1700000000000LL,
                 .cmid = "", .text = text, .text_len = 3 };
    iy_buf_reset(&b);
    proto_write_message(&b, &m);
    CHECK_MEM(b.data, b.len,
              "{\"id\":\"99\",\"channel\":\"11\",\"seq\":5,\"from\":\"3\",\"text\":\"hi\\n\",\"ts\":1700000000000}");
    m.pos = 17;
    strcpy(m.cmid, "c1");
    iy_buf_reset(&b);
    proto_write_message(&b, &m);
    CHECK_MEM(b.data, b.len,
              "{\"id\":\"99\",\"channel\":\"11\",\"seq\":5,\"pos\":17,\"from\":\"3\",\"text\":\"hi\\n\","
              "\"ts\":1700000000000,\"cmid\":\"c1\"}");

    /* an edited, a deleted message; an edit event */
    m.pos = 0, m.cmid[0] = '\0', m.edited_ms = 1700000000500LL;
    iy_buf_reset(&b);
    proto_write_message(&b, &m);
    CHECK_MEM(b.data, b.len, "{\"id\":\"99\",\"channel\":\"11\",\"seq\":5,\"from\":\"3\",\"text\":\"hi\\n\","
              "\"ts\":1700000000000,\"edited_at\":1700000000500}");
    m.deleted = 1, m.text_len = 0, m.edited_ms = 0;
    iy_buf_reset(&b);
    proto_write_message(&b, &m);
    CHECK_MEM(b.data, b.len, "{\"id\":\"99\",\"channel\":\"11\",\"seq\":5,\"from\":\"3\",\"text\":\"\","
              "\"ts\":1700000000000,\"deleted\":true}");
    iy_msg e = { .id = 100, .channel = 11, .seq = 6, .from = 3, .ts = 1700000000600LL, .text = text, .text_len = 2,
                 .event = IY_EV_EDITED, .subject = 99 };
    iy_buf_reset(&b);
    proto_write_message(&b, &e);
    CHECK_MEM(b.data, b.len, "{\"id\":\"100\",\"channel\":\"11\",\"seq\":6,\"from\":\"3\",\"text\":\"hi\","
              "\"ts\":1700000000600,\"event\":\"edited\",\"target\":\"99\"}");
    iy_msg rp = { .id = 101, .channel = 11, .seq = 7, .from = 3, .ts = 1700000000700LL, .text = text, .text_len = 2,
                  .reply_to = 99, .reply_seq = 5 };
    iy_buf_reset(&b);
    proto_write_message(&b, &rp);
    CHECK_MEM(b.data, b.len, "{\"id\":\"101\",\"channel\":\"11\",\"seq\":7,\"from\":\"3\",\"text\":\"hi\","
              "\"ts\":1700000000700,\"reply_to\":\"99\",\"reply_seq\":5}");
    iy_reactions rx = { .n = 1 };
    strcpy(rx.v[0].emoji, "ok");
    rx.v[0].n = 2, rx.v[0].users[0] = 3, rx.v[0].users[1] = 4;
    rp.reactions = &rx;
    rp.reply_to = 0;
    iy_buf_reset(&b);
    proto_write_message(&b, &rp);
    CHECK_MEM(b.data, b.len, "{\"id\":\"101\",\"channel\":\"11\",\"seq\":7,\"from\":\"3\",\"text\":\"hi\","
              "\"ts\":1700000000700,\"reactions\":[{\"emoji\":\"ok\",\"count\":2,\"users\":[\"3\",\"4\"]}]}");
    iy_msg re = { .id = 102, .channel = 11, .seq = 8, .from = 4, .ts = 1700000000800LL, .text = "ok", .text_len = 2,
                  .event = IY_EV_UNREACTED, .subject = 101 };
    iy_buf_reset(&b);
    proto_write_message(&b, &re);
    CHECK_MEM(b.data, b.len, "{\"id\":\"102\",\"channel\":\"11\",\"seq\":8,\"from\":\"4\",\"text\":\"ok\","
              "\"ts\":1700000000800,\"event\":\"reaction\",\"target\":\"101\",\"emoji\":\"ok\",\"on\":false}");
    e.event = IY_EV_DELETED, e.text_len = 0;
    iy_buf_reset(&b);
    proto_write_message(&b, &e);
    CHECK_MEM(b.data, b.len, "{\"id\":\"100\",\"channel\":\"11\",\"seq\":6,\"from\":\"3\",\"text\":\"\","
              "\"ts\":1700000000600,\"event\":\"deleted\",\"target\":\"99\"}");

    iy_buf_reset(&b);
    proto_write_error(&b, "r\"1", "bad_request", "unknown op");
    CHECK_MEM(b.data, b.len,
              "{\"op\":\"error\",\"rid\":\"r\\\"1\",\"code\":\"bad_request\",\"message\":\"unknown op\"}");
    iy_buf_reset(&b);
    proto_write_error(&b, NULL, "too_large", "m");
    CHECK_MEM(b.data, b.len, "{\"op\":\"error\",\"code\":\"too_large\",\"message\":\"m\"}");

    iy_buf_reset(&b);
    proto_write_http_error(&b, "not_found", "no such user");
    CHECK_MEM(b.data, b.len, "{\"error\":{\"code\":\"not_found\",\"message\":\"no such user\"}}");
    iy_buf_free(&b);
}

/* proto_write_message output decoded by jansson gives the same fields. */
static void test_roundtrip(void)
{
    static const char text[] = "a\0\"\\\x01\x1f\n\xE2\x80\xA8\xE2\x80\xA9\xED\x95\x9C\xF0\x9F\x98\x80 end";
    iy_msg m = { .id = UINT64_MAX, .channel = 7351042311118848001ULL, .seq = 9007199254740992ULL,
                 .pos = 123, .from = 1, .ts = 1712345678901LL, .cmid = "cm\"id",
                 .text = (char *)text, .text_len = sizeof text - 1 };
    iy_buf b = { 0 };
    proto_write_message(&b, &m);

    json_error_t e;
    json_t *j = json_loadb(b.data, b.len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);
    CHECK(j != NULL);
    if (j) {
        json_t *t = json_object_get(j, "text");
        CHECK(strcmp(json_string_value(json_object_get(j, "id")), "18446744073709551615") == 0);
        CHECK(strcmp(json_string_value(json_object_get(j, "channel")), "7351042311118848001") == 0);
        CHECK(json_integer_value(json_object_get(j, "seq")) == 9007199254740992LL);
        CHECK(json_integer_value(json_object_get(j, "pos")) == 123);
        CHECK(strcmp(json_string_value(json_object_get(j, "from")), "1") == 0);
        CHECK(json_integer_value(json_object_get(j, "ts")) == 1712345678901LL);
        CHECK(strcmp(json_string_value(json_object_get(j, "cmid")), "cm\"id") == 0);
        CHECK(json_string_length(t) == m.text_len && memcmp(json_string_value(t), text, m.text_len) == 0);
        CHECK_EQ(json_object_size(j), 8);
    }
    json_decref(j);

    /* And the text read back by proto_parse is the same bytes. */
    iy_buf f = { 0 };
    iy_buf_append_str(&f, "{\"op\":\"send\",\"channel\":\"1\",\"text\":");
    jw_str(&f, text, sizeof text - 1);
    iy_buf_putc(&f, '}');
    proto_req r;
    CHECK_EQ(proto_parse(f.data, f.len, &r, errmsg, sizeof errmsg), 0);
    CHECK(r.text_len == sizeof text - 1 && memcmp(r.text, text, r.text_len) == 0);
    proto_req_clear(&r);
    iy_buf_free(&f);
    iy_buf_free(&b);
}

/* ---- fed byte by byte: every prefix is an error, only the whole parses --- */

static void test_prefixes(void)
{
    static const char *frames[] = {
        "{\"op\":\"auth\",\"token\":\"abcdef\"}",
        "{\"op\":\"send\",\"rid\":\"1\",\"to\":\"12\",\"text\":\"h\\u00e9 \xF0\x9F\x98\x80 \\ud83d\\ude00\",\"cmid\":\"x\"}",
        "{\"op\":\"sync\",\"after\":100,\"limit\":20}",
        "{\"op\":\"history\",\"channel\":\"5\",\"before_seq\":10,\"limit\":3}",
        "{\"op\":\"read\",\"channel\":\"5\",\"seq\":10}",
        "{\"op\":\"typing\",\"channel\":\"5\"}",
        "{\"op\":\"presence\",\"users\":[\"1\",\"22\"]}",
        "{ \"op\" : \"hb\" }",
    };
    for (size_t f = 0; f < sizeof frames / sizeof frames[0]; f++) {
        size_t len = strlen(frames[f]);
        int bad = 0;
        for (size_t n = 0; n < len; n++) {
            /* An exact-size heap copy, so ASan catches any read past n. */
            char *p = malloc(n ? n : 1);
            memcpy(p, frames[f], n);
            proto_req r;
            int rc = proto_parse(p, n, &r, errmsg, sizeof errmsg);
            if (rc != IY_EINVAL) bad++;
            proto_req_clear(&r);
            free(p);
        }
        CHECK_EQ(bad, 0);
        char *p = malloc(len);
        memcpy(p, frames[f], len);
        proto_req r;
        CHECK_EQ(proto_parse(p, len, &r, errmsg, sizeof errmsg), 0);
        proto_req_clear(&r);
        free(p);
    }
}

int main(void)
{
    test_ops();
    test_errors();
    test_text();
    test_ids();
    test_jsonw();
    test_encoders();
    test_roundtrip();
    test_prefixes();
    return T_DONE("proto");
}
