/* fuzz_bus_wire.c — libFuzzer target for the decoder of what crosses
 * between nodes (src/bus/bus_wire.h): arbitrary bytes never crash or
 * over-read it, and whatever decodes re-encodes to the same bytes. */
#include "bus/bus_wire.h"
#include "base/err.h"
#include <stdlib.h>
#include <string.h>

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bus_wire w;
    if (bus_wire_decode(data, size, &w) != 0) return 0;
    iy_buf b = { 0 };
    switch (w.kind) {
    case W_MSG: bus_wire_msg(&b, w.sent_ms, &w.msg, 0); break;
    case W_NOTICE: {
        bus_notice *no = bus_notice_new(&w.user, 1, w.frame ? w.frame : "", w.frame_len);
        no->skip_user = w.skip_user;
        no->origin = w.origin;
        bus_wire_notice(&b, w.sent_ms, no, w.user);
        bus_notice_unref(no);
        break;
    }
    case W_REVOKE: bus_wire_revoke(&b, w.sent_ms, w.user, w.session); break;
    case W_NODE: bus_wire_node(&b, w.sent_ms, &w.node); break;
    case W_PRESENCE: bus_wire_presence(&b, w.sent_ms, &w.presence); break;
    default: abort();
    }
    CHECK(b.len == size && memcmp(b.data, data, size) == 0);
    iy_buf_free(&b);
    return 0;
}
