/* jsonw.c — JSON string escaping and number formatting (see jsonw.h).
 *
 * jw_str is on the path of every message fanned out, so it scans runs of
 * bytes that need no escaping with a table lookup and copies each run with
 * one memcpy. Only three kinds of byte stop a run: the ones JSON requires us
 * to escape ('"', '\\', < 0x20), and 0xE2, the lead byte of U+2028 and
 * U+2029 (E2 80 A8 / E2 80 A9), which must be looked at more closely. */
#include "jsonw.h"
#include <string.h>

/* 0: copy as is; 1: escape; 2: 0xE2, possibly U+2028/U+2029. */
static const uint8_t jw__class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,   /* 0x10 */
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0x20: '"' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,   /* 0x50: '\\' */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0x80 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0xC0 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,   /* 0xE0: 0xE2 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

static void jw__escape(iy_buf *b, uint8_t c)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
    switch (c) {
    case '"':  iy_buf_append(b, "\\\"", 2); return;
    case '\\': iy_buf_append(b, "\\\\", 2); return;
    case '\n': iy_buf_append(b, "\\n", 2); return;
    case '\r': iy_buf_append(b, "\\r", 2); return;
    case '\t': iy_buf_append(b, "\\t", 2); return;
    case '\b': iy_buf_append(b, "\\b", 2); return;
    case '\f': iy_buf_append(b, "\\f", 2); return;
    default:   iy_buf_append(b, e, sizeof e); return;
    }
}

void jw_str(iy_buf *b, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;

    /* The common case escapes nothing: one reservation for all of it. */
    iy_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    while (i < n) {
        size_t start = i;
        while (i < n && jw__class[p[i]] == 0) i++;
        if (i > start) iy_buf_append(b, s + start, i - start);
        if (i == n) break;
        if (jw__class[p[i]] == 1) {
            jw__escape(b, p[i]);
            i++;
        } else if (i + 2 < n && p[i + 1] == 0x80 && (p[i + 2] == 0xA8 || p[i + 2] == 0xA9)) {
            /* Valid JSON as is, but a line terminator to JavaScript (before ES2019). */
            iy_buf_append(b, p[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
            i += 3;
        } else {
            iy_buf_putc(b, (char)p[i]);
            i++;
        }
    }
    iy_buf_putc(b, '"');
}

void jw_cstr(iy_buf *b, const char *s) { jw_str(b, s, strlen(s)); }

/* Writes the decimal digits of v at the end of tmp[21]; returns the first. */
static char *jw__digits(char tmp[21], uint64_t v)
{
    char *p = tmp + 21;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

void jw_id(iy_buf *b, uint64_t v)
{
    char tmp[21];
    char *p = jw__digits(tmp, v);
    size_t n = (size_t)(tmp + 21 - p);
    iy_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len++] = '"';
}

void jw_u64(iy_buf *b, uint64_t v)
{
    char tmp[21];
    char *p = jw__digits(tmp, v);
    iy_buf_append(b, p, (size_t)(tmp + 21 - p));
}

void jw_i64(iy_buf *b, int64_t v)
{
    if (v < 0) {
        iy_buf_putc(b, '-');
        jw_u64(b, (uint64_t)0 - (uint64_t)v);   /* also right for INT64_MIN */
        return;
    }
    jw_u64(b, (uint64_t)v);
}

void jw_key(iy_buf *b, const char *key)
{
    size_t n = strlen(key);
    iy_buf_reserve(b, n + 3);
    b->data[b->len++] = '"';
    memcpy(b->data + b->len, key, n);
    b->len += n;
    b->data[b->len++] = '"';
    b->data[b->len++] = ':';
}
