/* buf.h — a growable byte buffer that carries its length.
 *
 * iy_buf owns its bytes; data is not NUL-terminated unless iy_buf_cstr() is
 * called. A zeroed iy_buf is a valid empty buffer. iy_str is a borrowed
 * {ptr,len} view. */
#ifndef IY_BUF_H
#define IY_BUF_H
#include <stddef.h>
#include <stdint.h>

typedef struct iy_str {
    const char *ptr;
    size_t len;
} iy_str;

#define IY_STR(lit) ((iy_str){ (lit), sizeof(lit) - 1 })

typedef struct iy_buf {
    char *data;
    size_t len;
    size_t cap;
} iy_buf;

void iy_buf_reserve(iy_buf *b, size_t extra);        /* room for extra more bytes; aborts on OOM */
int iy_buf_try_reserve(iy_buf *b, size_t extra);     /* 0 or IY_ENOMEM */
void iy_buf_append(iy_buf *b, const void *p, size_t n);
void iy_buf_append_str(iy_buf *b, const char *s);    /* strlen(s) bytes */
void iy_buf_appendf(iy_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void iy_buf_putc(iy_buf *b, char c);
void iy_buf_consume(iy_buf *b, size_t n);            /* drop n bytes from the front */
const char *iy_buf_cstr(iy_buf *b);                  /* NUL-terminates (not counted in len) */
void iy_buf_reset(iy_buf *b);                        /* len = 0, keeps memory */
void iy_buf_free(iy_buf *b);                         /* frees memory, leaves an empty buffer */

int iy_str_eq(iy_str a, const char *lit);            /* 1 if a equals the C string lit */
int iy_str_ieq(iy_str a, const char *lit);           /* ASCII case-insensitive */

#endif
