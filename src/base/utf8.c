/* utf8.c — strict UTF-8 validation written out as a small state machine.
 *
 * Hand-written rather than taken from a library because it is twenty lines,
 * must be incremental across WebSocket fragments, and sits on the hot path of
 * every text frame. Tested byte by byte in tests/unit/test_utf8.c. */
#include "utf8.h"
#include "err.h"

int iy_utf8_feed(iy_utf8 *st, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = p[i];
        if (st->need == 0) {
            if (c < 0x80) continue;
            if (c >= 0xC2 && c <= 0xDF) { st->need = 1; st->cp = c & 0x1F; st->min = 0x80; }
            else if (c >= 0xE0 && c <= 0xEF) { st->need = 2; st->cp = c & 0x0F; st->min = 0x800; }
            else if (c >= 0xF0 && c <= 0xF4) { st->need = 3; st->cp = c & 0x07; st->min = 0x10000; }
            else return IY_EUTF8;
            continue;
        }
        if ((c & 0xC0) != 0x80) return IY_EUTF8;
        st->cp = (st->cp << 6) | (c & 0x3F);
        st->need--;
        /* Reject as early as possible: after the second byte the range is known. */
        if (st->min == 0x800 && st->need == 1) {
            uint32_t hi = st->cp << 6; /* lower bound of what this prefix can become */
            if (hi < 0x800 || (hi >= 0xD800 && hi <= 0xDFFF)) return IY_EUTF8;
        } else if (st->min == 0x10000 && st->need == 2) {
            uint32_t hi = st->cp << 12;
            if (hi < 0x10000 || hi > 0x10FFFF) return IY_EUTF8;
        }
        if (st->need == 0) {
            if (st->cp < st->min || st->cp > 0x10FFFF || (st->cp >= 0xD800 && st->cp <= 0xDFFF))
                return IY_EUTF8;
        }
    }
    return 0;
}

int iy_utf8_done(const iy_utf8 *st) { return st->need == 0; }

int iy_utf8_validate(const char *p, size_t len)
{
    iy_utf8 st = { 0, 0, 0 };
    if (iy_utf8_feed(&st, (const uint8_t *)p, len) != 0 || !iy_utf8_done(&st)) return IY_EUTF8;
    return 0;
}

size_t iy_utf8_count(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) n += ((uint8_t)p[i] & 0xC0) != 0x80;
    return n;
}
