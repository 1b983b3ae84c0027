/* utf8.h — strict UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), whole or incremental, and code point counting.
 *
 * The incremental validator lets the WebSocket codec check a text message
 * whose fragments split a character anywhere. */
#ifndef IY_UTF8_H
#define IY_UTF8_H
#include <stddef.h>
#include <stdint.h>

/* Incremental state: zero-initialise, feed chunks, then ask iy_utf8_done(). */
typedef struct iy_utf8 {
    uint32_t need;   /* continuation bytes still expected for this character */
    uint32_t cp;     /* code point bits so far */
    uint32_t min;    /* smallest code point allowed for this length (overlongs) */
} iy_utf8;

/* Feeds len bytes. Returns 0 while the input so far can be a prefix of valid
 * UTF-8, IY_EUTF8 as soon as it cannot (the state is then undefined). */
int iy_utf8_feed(iy_utf8 *st, const uint8_t *p, size_t len);

/* 1 if the input fed so far ends on a character boundary. */
int iy_utf8_done(const iy_utf8 *st);

/* Whole-buffer check: 0 if p[0..len) is valid UTF-8, else IY_EUTF8. */
int iy_utf8_validate(const char *p, size_t len);

/* Number of code points in p[0..len), which must already be valid UTF-8. */
size_t iy_utf8_count(const char *p, size_t len);

#endif
