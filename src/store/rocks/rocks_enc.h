/* rocks_enc.h — key and value encoding of the RocksDB backend, shared by
 * its files (the key layout is documented at the top of rocks.c). */
#ifndef IY_ROCKS_ENC_H
#define IY_ROCKS_ENC_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
    K_META = 'm', K_USER = 'u', K_UNAME = 'n', K_SESSION = 's', K_CHANNEL = 'c',
    K_DIRECT = 'd', K_UCHAN = 'x', K_MSG = 'M', K_INBOX = 'I', K_CMID = 'C',
    K_READ = 'R', K_FRIEND = 'F', K_ACTIVE = 'L', K_VERSION = 'V', K_SETTING = 'G',
};

#define MSG_F_EVENT 0x80u   /* in a message's flags byte: an event block follows the cmid */

/* ---- big-endian encoding ---------------------------------------------- */

static inline void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

/* A writer into a caller's buffer sized for the largest record it holds. */
typedef struct wr {
    uint8_t *p;
    size_t n;
} wr;

static inline void wr_u8(wr *w, unsigned v) { w->p[w->n++] = (uint8_t)v; }
static inline void wr_u16(wr *w, unsigned v) { w->p[w->n++] = (uint8_t)(v >> 8); w->p[w->n++] = (uint8_t)v; }
static inline void wr_u32(wr *w, uint32_t v) { wr_u16(w, v >> 16); wr_u16(w, v & 0xffff); }
static inline void wr_u64(wr *w, uint64_t v) { put64(w->p + w->n, v); w->n += 8; }
static inline void wr_mem(wr *w, const void *p, size_t n) { if (n) memcpy(w->p + w->n, p, n); w->n += n; }

/* A bounds-checked reader; bad is set on the first overrun (a corrupt record). */
typedef struct rd {
    const uint8_t *p;
    size_t n;
    int bad;
} rd;

static inline const uint8_t *rd_mem(rd *r, size_t n)
{
    if (r->bad || r->n < n) {
        r->bad = 1;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    r->n -= n;
    return p;
}

static inline unsigned rd_u8(rd *r) { const uint8_t *p = rd_mem(r, 1); return p ? p[0] : 0; }
static inline unsigned rd_u16(rd *r) { const uint8_t *p = rd_mem(r, 2); return p ? (unsigned)p[0] << 8 | p[1] : 0; }
static inline uint32_t rd_u32(rd *r) { uint32_t hi = rd_u16(r); return hi << 16 | rd_u16(r); }
static inline uint64_t rd_u64(rd *r) { const uint8_t *p = rd_mem(r, 8); return p ? get64(p) : 0; }

/* Reads len bytes into dst (room for max bytes plus the NUL). */
static inline void rd_str(rd *r, size_t len, char *dst, size_t max)
{
    const uint8_t *p = rd_mem(r, len);
    if (!p || len > max) {
        r->bad = 1;
        dst[0] = '\0';
        return;
    }
    memcpy(dst, p, len);
    dst[len] = '\0';
}

/* Keys: type byte followed by one or two big-endian u64. */
static inline size_t key1(uint8_t *k, int type, uint64_t a)
{
    k[0] = (uint8_t)type;
    put64(k + 1, a);
    return 9;
}

static inline size_t key2(uint8_t *k, int type, uint64_t a, uint64_t b)
{
    key1(k, type, a);
    put64(k + 9, b);
    return 17;
}

static inline size_t key3(uint8_t *k, int type, uint64_t a, uint64_t b, uint64_t c)
{
    key2(k, type, a, b);
    put64(k + 17, c);
    return 25;
}

/* The smallest key above every key that starts with type+a. */
static inline size_t key1_succ(uint8_t *k, int type, uint64_t a)
{
    if (a == UINT64_MAX) {
        k[0] = (uint8_t)(type + 1);
        return 1;
    }
    return key1(k, type, a + 1);
}

#endif
