/* bus_wire.h — the wire form of what crosses between nodes (bus_nats.c).
 *
 * Every NATS message of iyagi is one of these, binary, big-endian:
 *
 *   version u8 (2) | kind u8 | sent_ms i64 (the publisher's clock) | body
 *
 *   kind        subject            body
 *   W_MSG       iyagi.u.<user>     origin node u16, thread u16, conn u64 | user u64 |
 *                                  pos u64 | id u64 | channel u64 | seq u64 | from u64 |
 *                                  event u8 | subject u64 | clen u8 cmid | tlen u32 text |
 *                                  nmentions u8 | mentioned user u64 * nmentions
 *               (one committed message for one recipient, with the recipient's pos)
 *   W_NOTICE    iyagi.u.<user>     origin (as above) | user u64 | skip_user u64 |
 *                                  flen u32 frame   (a JSON frame for the user's sockets)
 *   W_REVOKE    iyagi.u.<user>     user u64 | session [32]
 *               and iyagi.revoke   (the same bytes, for every node's token cache)
 *   W_NODE      iyagi.nodes        number u16 | incarnation i64 | connections u32 |
 *                                  capacity u32 | leaving u8 | nlen u8 name | ulen u16 ws_url
 *   W_PRESENCE  iyagi.presence     node u16 | user u64 | online u8 | global u8 |
 *                                  last_active i64
 *
 * A decoder never trusts its input: every length is checked against the
 * buffer, strings against their limits, and a message of an unknown
 * version or kind is refused (IY_EPROTO), so a node of a newer version can
 * add kinds without older nodes misreading them. Pure: no I/O. */
#ifndef IY_BUS_WIRE_H
#define IY_BUS_WIRE_H
#include <stddef.h>
#include <stdint.h>
#include "bus.h"
#include "../base/buf.h"

#define BUS_WIRE_VERSION 4   /* 2: a msg carries its mentions after the text; 3: then reply_to,
                                reply_seq (and events 4, 5: edited, deleted); 4: then its
                                attachments (len u16 + iy_atts_encode) */

enum bus_wire_kind { W_MSG = 1, W_NOTICE = 2, W_REVOKE = 3, W_NODE = 4, W_PRESENCE = 5 };

#define BUS_NODE_NAME_MAX 127
#define BUS_WS_URL_MAX 599

/* A node's registry entry as nodes announce it. */
typedef struct bus_node_info {
    unsigned number;                      /* store node number */
    int64_t incarnation;                  /* when this run of the node started (ms) */
    char name[BUS_NODE_NAME_MAX + 1];
    char ws_url[BUS_WS_URL_MAX + 1];
    uint32_t connections;                 /* authenticated WebSockets now */
    uint32_t capacity;
    int leaving;                          /* draining: out of discovery at once */
} bus_node_info;

/* A change of one node's own view of a user's presence. */
typedef struct bus_presence_info {
    unsigned node;
    uint64_t user;
    int online;                           /* the sending node's local view */
    int global;                           /* ... and its global view after the change */
    int64_t last_active;
} bus_presence_info;

/* A decoded message. For W_MSG, msg.m.text points into the input (not
 * owned) and msg.members/pos point at user/pos below. */
typedef struct bus_wire {
    int kind;
    int64_t sent_ms;
    uint64_t user;                        /* W_MSG, W_NOTICE, W_REVOKE */
    bus_msg msg;                          /* W_MSG */
    uint64_t pos;                         /* W_MSG: the recipient's pos */
    const char *frame;                    /* W_NOTICE: into the input */
    size_t frame_len;
    uint64_t skip_user;
    bus_origin origin;                    /* W_MSG, W_NOTICE */
    uint8_t session[32];                  /* W_REVOKE */
    bus_node_info node;                   /* W_NODE */
    bus_presence_info presence;           /* W_PRESENCE */
    iy_atts atts;                         /* W_MSG: msg.m.atts points here when it has some */
} bus_wire;

/* Encoders: append the whole message to out. */
void bus_wire_msg(iy_buf *out, int64_t sent_ms, const bus_msg *m, uint32_t k);   /* for m->members[k] */
void bus_wire_notice(iy_buf *out, int64_t sent_ms, const bus_notice *no, uint64_t user);
void bus_wire_revoke(iy_buf *out, int64_t sent_ms, uint64_t user, const uint8_t session[32]);
void bus_wire_node(iy_buf *out, int64_t sent_ms, const bus_node_info *n);
void bus_wire_presence(iy_buf *out, int64_t sent_ms, const bus_presence_info *p);

/* Decodes data[0..len) into *w (pointing into data). Returns 0, IY_EPROTO
 * (malformed, unknown version or kind). */
int bus_wire_decode(const void *data, size_t len, bus_wire *w);

#endif
