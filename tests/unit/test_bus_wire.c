/* test_bus_wire.c — the wire form of what crosses between nodes
 * (src/bus/bus_wire.h): every kind round-trips, and every truncation,
 * extension, bad version, kind or field is refused. */
#include "t.h"
#include "base/err.h"
#include "bus/bus_wire.h"
#include <stdlib.h>

/* Every proper prefix and a one-byte extension of a valid message is refused. */
static void check_edges(const iy_buf *b)
{
    bus_wire w;
    int prefixes_refused = 1;
    for (size_t n = 0; n < b->len; n++) prefixes_refused &= bus_wire_decode(b->data, n, &w) == IY_EPROTO;
    CHECK(prefixes_refused);
    char *longer = malloc(b->len + 1);
    memcpy(longer, b->data, b->len);
    longer[b->len] = 0;
    CHECK_EQ(bus_wire_decode(longer, b->len + 1, &w), IY_EPROTO);
    longer[0] = BUS_WIRE_VERSION + 1;                       /* a newer version */
    CHECK_EQ(bus_wire_decode(longer, b->len, &w), IY_EPROTO);
    longer[0] = BUS_WIRE_VERSION;
    longer[1] = 99;                                         /* an unknown kind */
    CHECK_EQ(bus_wire_decode(longer, b->len, &w), IY_EPROTO);
    free(longer);
}

static void test_msg(void)
{
    uint64_t members[3] = { 11, 22, 33 }, pos[3] = { 5, 6, 7 };
    bus_msg m;
    memset(&m, 0, sizeof m);
    m.m.id = 0x0123456789abcdefull;
    m.m.channel = 77;
    m.m.seq = 9;
    m.m.from = 11;
    m.m.event = IY_EV_MEMBER_ADDED;
    m.m.subject = 33;
    strcpy(m.m.cmid, "cmid-1");
    char text[] = "h\0llo \xf0\x9f\x98\x80";
    m.m.text = text;
    m.m.text_len = sizeof text - 1;
    m.m.nmentions = 2;
    m.m.mentions[0] = 33;
    m.m.mentions[1] = 0x8000000000000001ull;
    m.m.reply_to = 0x7000000000000002ull;
    m.m.reply_seq = 41;
    iy_atts atts = { .n = 2 };
    atts.v[0] = (iy_att){ .id = 501, .size = 12345, .thumb = 1, .type = "image/png", .name = "사진.png" };
    atts.v[1] = (iy_att){ .id = 502, .size = 3, .type = "text/plain", .name = "a.txt" };
    m.m.atts = &atts;
    m.n = 3;
    m.members = members;
    m.pos = pos;
    m.origin = (bus_origin){ 1023, 7, 0xfeedull };
    iy_buf b = { 0 };
    bus_wire_msg(&b, 1795000000123, &m, 1);
    bus_wire w;
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), 0);
    CHECK_EQ(w.kind, W_MSG);
    CHECK_EQ(w.sent_ms, 1795000000123);
    CHECK_EQ(w.user, 22);
    CHECK_EQ(w.pos, 6);
    CHECK(w.msg.m.id == m.m.id && w.msg.m.channel == 77 && w.msg.m.seq == 9 && w.msg.m.from == 11);
    CHECK_EQ(w.msg.m.event, IY_EV_MEMBER_ADDED);
    CHECK_EQ(w.msg.m.subject, 33);
    CHECK(strcmp(w.msg.m.cmid, "cmid-1") == 0);
    CHECK_EQ(w.msg.m.text_len, sizeof text - 1);
    CHECK(memcmp(w.msg.m.text, text, sizeof text - 1) == 0);
    CHECK_EQ(w.msg.m.ts, iy_id_ts(m.m.id));
    CHECK(w.msg.m.nmentions == 2 && w.msg.m.mentions[0] == 33 && w.msg.m.mentions[1] == 0x8000000000000001ull);
    CHECK(w.msg.m.reply_to == 0x7000000000000002ull && w.msg.m.reply_seq == 41);
    CHECK(w.msg.m.atts && w.msg.m.atts->n == 2);
    if (w.msg.m.atts && w.msg.m.atts->n == 2) {
        CHECK(w.msg.m.atts->v[0].id == 501 && w.msg.m.atts->v[0].size == 12345 && w.msg.m.atts->v[0].thumb == 1);
        CHECK(strcmp(w.msg.m.atts->v[0].name, "사진.png") == 0 && strcmp(w.msg.m.atts->v[1].type, "text/plain") == 0);
    }
    CHECK(w.msg.n == 1 && w.msg.members[0] == 22 && w.msg.pos[0] == 6);
    CHECK(w.origin.node == 1023 && w.origin.thread == 7 && w.origin.conn == 0xfeedull);
    check_edges(&b);
    /* A bad event value, a zero pos, a cmid with a NUL are refused. */
    m.m.atts = NULL;
    iy_buf_reset(&b);
    m.m.event = IY_EV_UNREACTED + 1;
    bus_wire_msg(&b, 1, &m, 0);
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), IY_EPROTO);
    m.m.event = 0;
    pos[0] = 0;
    iy_buf_reset(&b);
    bus_wire_msg(&b, 1, &m, 0);
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), IY_EPROTO);
    iy_buf_free(&b);
}

static void test_notice_revoke(void)
{
    uint64_t users[2] = { 4, 5 };
    bus_notice *no = bus_notice_new(users, 2, "{\"op\":\"typing\"}", 15);
    no->skip_user = 4;
    no->origin = (bus_origin){ 2, 1, 99 };
    iy_buf b = { 0 };
    bus_wire_notice(&b, 42, no, 5);
    bus_wire w;
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), 0);
    CHECK(w.kind == W_NOTICE && w.user == 5 && w.skip_user == 4 && w.frame_len == 15);
    CHECK(memcmp(w.frame, "{\"op\":\"typing\"}", 15) == 0);
    CHECK(w.origin.node == 2 && w.origin.thread == 1 && w.origin.conn == 99);
    check_edges(&b);
    bus_notice_unref(no);

    uint8_t session[32];
    for (int i = 0; i < 32; i++) session[i] = (uint8_t)(i * 7);
    iy_buf_reset(&b);
    bus_wire_revoke(&b, 43, 77, session);
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), 0);
    CHECK(w.kind == W_REVOKE && w.user == 77 && memcmp(w.session, session, 32) == 0);
    check_edges(&b);
    iy_buf_free(&b);
}

static void test_node_presence(void)
{
    bus_node_info n = { .number = 12, .incarnation = 1795000000000, .connections = 15000, .capacity = 19000 };
    strcpy(n.name, "node-a");
    strcpy(n.ws_url, "wss://chat-a.example/v1/ws");
    iy_buf b = { 0 };
    bus_wire_node(&b, 44, &n);
    bus_wire w;
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), 0);
    CHECK(w.kind == W_NODE && w.node.number == 12 && w.node.incarnation == 1795000000000);
    CHECK(w.node.connections == 15000 && w.node.capacity == 19000 && !w.node.leaving);
    CHECK(strcmp(w.node.name, "node-a") == 0 && strcmp(w.node.ws_url, n.ws_url) == 0);
    check_edges(&b);
    n.leaving = 1;
    n.name[0] = '\0';                                       /* a node has a name */
    iy_buf_reset(&b);
    bus_wire_node(&b, 44, &n);
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), IY_EPROTO);

    bus_presence_info p = { 3, 555, 1, 1, 1795000000999 };
    iy_buf_reset(&b);
    bus_wire_presence(&b, 45, &p);
    CHECK_EQ(bus_wire_decode(b.data, b.len, &w), 0);
    CHECK(w.kind == W_PRESENCE && w.presence.node == 3 && w.presence.user == 555);
    CHECK(w.presence.online == 1 && w.presence.global == 1 && w.presence.last_active == 1795000000999);
    check_edges(&b);
    iy_buf_free(&b);
}

int main(void)
{
    test_msg();
    test_notice_revoke();
    test_node_presence();
    return T_DONE("bus_wire");
}
