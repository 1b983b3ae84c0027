/* buf.c — growable byte buffer (see buf.h). */
#include "buf.h"
#include "alloc.h"
#include "err.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static size_t grow_to(const iy_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    return cap;
}

void iy_buf_reserve(iy_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = grow_to(b, extra);
    b->data = iy_realloc(b->data, cap);
    b->cap = cap;
}

int iy_buf_try_reserve(iy_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap) return 0;
    size_t cap = grow_to(b, extra);
    char *p = iy_try_realloc(b->data, cap);
    if (!p) return IY_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

void iy_buf_append(iy_buf *b, const void *p, size_t n)
{
    if (!n) return;
    iy_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void iy_buf_append_str(iy_buf *b, const char *s) { iy_buf_append(b, s, strlen(s)); }

void iy_buf_putc(iy_buf *b, char c)
{
    iy_buf_reserve(b, 1);
    b->data[b->len++] = c;
}

void iy_buf_appendf(iy_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        iy_buf_append(b, tmp, (size_t)n);
        return;
    }
    iy_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void iy_buf_consume(iy_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

const char *iy_buf_cstr(iy_buf *b)
{
    iy_buf_reserve(b, 0);
    b->data[b->len] = '\0';
    return b->data;
}

void iy_buf_reset(iy_buf *b) { b->len = 0; }

void iy_buf_free(iy_buf *b)
{
    iy_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int iy_str_eq(iy_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.ptr, lit, n) == 0;
}

int iy_str_ieq(iy_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.ptr, lit, n) == 0;
}
