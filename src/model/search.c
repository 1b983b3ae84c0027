/* search.c — query checks, matching and snippets (search.h). */
#include "search.h"
#include <string.h>
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/utf8.h"

/* One code point at p (valid UTF-8): its value, and its length in *n. */
static uint32_t cp_at(const uint8_t *p, size_t *n)
{
    if (p[0] < 0x80) { *n = 1; return p[0]; }
    if (p[0] < 0xE0) { *n = 2; return (uint32_t)(p[0] & 0x1F) << 6 | (p[1] & 0x3F); }
    if (p[0] < 0xF0) { *n = 3; return (uint32_t)(p[0] & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F); }
    *n = 4;
    return (uint32_t)(p[0] & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 | (uint32_t)(p[2] & 0x3F) << 6 |
           (p[3] & 0x3F);
}

/* The lower case of the Latin, Greek and Cyrillic capitals that have one in
 * the same UTF-8 length (so a folded copy keeps every byte offset). */
static uint32_t fold(uint32_t c)
{
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0xC0) return c;
    if (c <= 0xDE && c != 0xD7) return c + 32;                       /* À..Þ */
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1;
    if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) && (c & 1)) return c + 1;
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;       /* Greek */
    if (c >= 0x410 && c <= 0x42F) return c + 32;                      /* Cyrillic А..Я */
    if (c >= 0x400 && c <= 0x40F) return c + 80;                      /* Ѐ..Џ */
    return c;
}

/* A folded copy of p[0..len) (same length; malloc'd). */
static uint8_t *folded(const char *p, size_t len)
{
    uint8_t *out = iy_malloc(len ? len : 1);
    const uint8_t *s = (const uint8_t *)p;
    for (size_t i = 0; i < len;) {
        size_t n;
        uint32_t c = cp_at(s + i, &n);
        if (i + n > len) n = len - i;   /* never past the end (invalid input) */
        uint32_t f = fold(c);
        if (f == c || n == 1) {
            memcpy(out + i, s + i, n);
            if (n == 1) out[i] = (uint8_t)f;
        } else {                         /* two-byte forms only */
            out[i] = (uint8_t)(0xC0 | f >> 6);
            out[i + 1] = (uint8_t)(0x80 | (f & 0x3F));
        }
        i += n;
    }
    return out;
}

int iy_search_query_check(const char *q, size_t len)
{
    if (len == 0 || len > IY_SEARCH_MAX_BYTES || iy_utf8_validate(q, len)) return IY_EINVAL;
    size_t n = iy_utf8_count(q, len);
    if (n < IY_SEARCH_MIN_CP || n > IY_SEARCH_MAX_CP) return IY_EINVAL;
    for (size_t i = 0; i < len; i++)
        if ((uint8_t)q[i] < 0x20 || q[i] == 0x7F) return IY_EINVAL;
    return 0;
}

static long find_folded(const uint8_t *t, size_t len, const uint8_t *q, size_t qlen, size_t from)
{
    if (qlen == 0 || from > len || len - from < qlen) return -1;
    const uint8_t *m = memmem(t + from, len - from, q, qlen);
    return m ? (long)(m - t) : -1;
}

long iy_search_find(const char *text, size_t len, const char *q, size_t qlen, size_t from)
{
    uint8_t *ft = folded(text, len), *fq = folded(q, qlen);
    long at = find_folded(ft, len, fq, qlen, from);
    iy_free(ft);
    iy_free(fq);
    return at;
}

/* The start of the code point before byte i (i > 0). */
static size_t back1(const uint8_t *t, size_t i)
{
    do i--; while (i > 0 && (t[i] & 0xC0) == 0x80);
    return i;
}

static size_t fwd1(const uint8_t *t, size_t len, size_t i)
{
    do i++; while (i < len && (t[i] & 0xC0) == 0x80);
    return i;
}

int iy_search_snippet(const char *text, size_t len, const char *q, size_t qlen, iy_snippet *out)
{
    out->len = 0;
    out->nhl = 0;
    out->text[0] = '\0';
    uint8_t *ft = folded(text, len), *fq = folded(q, qlen);
    const uint8_t *t = (const uint8_t *)text;
    long at = find_folded(ft, len, fq, qlen, 0);
    if (at < 0) {
        iy_free(ft);
        iy_free(fq);
        return 0;
    }
    size_t start = (size_t)at, end = (size_t)at + qlen;
    for (int i = 0; i < IY_SNIPPET_CP && start > 0; i++) start = back1(t, start);
    for (int i = 0; i < IY_SNIPPET_CP && end < len; i++) end = fwd1(t, len, end);
    static const char ell[] = "\xE2\x80\xA6";   /* … */
    uint32_t cp0 = 0;   /* code points before the text in the snippet */
    if (start > 0) {
        memcpy(out->text, ell, 3);
        out->len = 3;
        cp0 = 1;
    }
    memcpy(out->text + out->len, text + start, end - start);
    out->len += end - start;
    if (end < len) {
        memcpy(out->text + out->len, ell, 3);
        out->len += 3;
    }
    out->text[out->len] = '\0';
    /* Every match inside the window, as code point offsets. */
    size_t pos = start;
    uint32_t cps = cp0;   /* code points of the snippet before byte pos */
    for (long m = at; m >= 0 && (size_t)m + qlen <= end && out->nhl < IY_SNIPPET_HL_MAX;
         m = find_folded(ft, end, fq, qlen, (size_t)m + qlen)) {
        cps += (uint32_t)iy_utf8_count(text + pos, (size_t)m - pos);
        uint32_t qn = (uint32_t)iy_utf8_count(text + m, qlen);
        out->hl[out->nhl][0] = cps;
        out->hl[out->nhl][1] = cps + qn;
        out->nhl++;
        cps += qn;
        pos = (size_t)m + qlen;
    }
    iy_free(ft);
    iy_free(fq);
    return 1;
}

/* A byte that can be part of a word: ASCII letters and digits, and every
 * byte of a non-ASCII character (Hangul, kana, accented letters...). */
static int wordy(uint8_t c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int64_t iy_search_score(const char *text, size_t len, const char *q, size_t qlen)
{
    uint8_t *ft = folded(text, len), *fq = folded(q, qlen);
    const uint8_t *t = (const uint8_t *)text;
    int tier = 0, seen = 0;
    for (long m = find_folded(ft, len, fq, qlen, 0); m >= 0 && seen < IY_SNIPPET_HL_MAX && tier < 3;
         m = find_folded(ft, len, fq, qlen, (size_t)m + 1), seen++) {
        size_t a = (size_t)m, b = a + qlen;
        int starts = a == 0 || !wordy(t[a - 1]) || !wordy((uint8_t)q[0]);
        int ends = b == len || !wordy(t[b]) || !wordy((uint8_t)q[qlen - 1]);
        int k = starts && ends ? 3 : starts ? 2 : 1;
        if (k > tier) tier = k;
    }
    iy_free(ft);
    iy_free(fq);
    if (!tier) return 0;
    size_t cps = iy_utf8_count(text, len);
    return (int64_t)tier * 1000000 - (int64_t)(cps < 999999 ? cps : 999999);
}
