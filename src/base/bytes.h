/* bytes.h — big-endian integers and a bounds-checked reader and writer of
 * binary records, for the formats that are ours: the RocksDB backend's keys
 * and values (store/rocks) and the bus's wire form (bus/bus_wire.c). */
#ifndef IY_BYTES_H
#define IY_BYTES_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

#endif
