/* ws.c — RFC 6455 frame reader (server side) and frame writers.
 *
 * See ws.h for the state machine. The reader copies nothing when a control
 * frame or an unfragmented data frame lies whole in the caller's bytes: it
 * unmasks in place and points the event there. Otherwise payload bytes are
 * unmasked while being copied into the reader's buffer, and text is fed to
 * the incremental UTF-8 validator as it arrives, so a bad byte is rejected
 * without waiting for the rest of the message. */
#include "ws.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/utf8.h"
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <string.h>

#define WS_MAX_MESSAGE (1u << 30)   /* clamp of max_message: lengths fit uint32_t */
#define WS_CTL_MAX 125              /* largest control frame payload */
#define WS_KEEP_MAX 16384           /* a buffer larger than this is freed when idle */
#define WS_MIN_CAP 256

enum { ST_HEADER = 0, ST_PAYLOAD = 1 };

struct ws_reader {
    uint8_t *buf;          /* message in progress, then a partial control payload */
    uint32_t cap;
    uint32_t msg_len;      /* buf[0..msg_len): the data message being reassembled */
    uint32_t blen;         /* bytes used in buf: msg_len + a partial control payload */
    uint32_t max_message;
    uint32_t remaining;    /* PAYLOAD: bytes of the current frame still to come */
    iy_utf8 utf8;          /* validator of the text message in progress */
    uint8_t hdr[14];       /* HEADER: the bytes received so far (2 + 8 + 4 at most) */
    uint8_t hdr_len;
    uint8_t mask[4];
    uint8_t mask_pos;      /* payload bytes of the current frame seen so far, mod 4 */
    uint8_t state;         /* ST_HEADER or ST_PAYLOAD */
    uint8_t op;            /* opcode of the current frame */
    uint8_t fin;
    uint8_t msg_op;        /* WS_OP_TEXT/BINARY while a data message is in progress, else 0 */
    uint8_t release;       /* the last event pointed into buf: trim buf on the next call */
    int8_t err;            /* 0, or the error that killed the reader */
};

/* Tens of thousands of connections each hold one: keep it small. */
_Static_assert(sizeof(struct ws_reader) <= 80, "ws_reader grew");

/* A non-NULL pointer for empty payloads (NULL + 0 is undefined behaviour). */
static const uint8_t ws__empty[1];

ws_reader *ws_reader_new(size_t max_message)
{
    ws_reader *r = iy_calloc(1, sizeof *r);
    r->max_message = max_message > WS_MAX_MESSAGE ? WS_MAX_MESSAGE : (uint32_t)max_message;
    return r;
}

size_t ws_reader_mem(const ws_reader *r)
{
    return r ? sizeof *r + r->cap : 0;
}

void ws_reader_free(ws_reader *r)
{
    if (!r) return;
    iy_free(r->buf);
    iy_free(r);
}

int ws_reader_idle(const ws_reader *r)
{
    return r->state == ST_HEADER && r->hdr_len == 0 && r->msg_op == 0 && r->msg_len == 0 &&
           (r->blen == 0 || r->release) && r->err == 0;
}

uint16_t ws_close_code_for(int err)
{
    switch (err) {
    case IY_EPROTO: return 1002;
    case IY_EUTF8: return 1007;
    case IY_ETOOBIG: return 1009;
    default: return 1011;
    }
}

/* dst[i] = src[i] ^ mask[(off + i) % 4]; dst may equal src. Eight bytes at a
 * time through memcpy, which compilers turn into plain unaligned loads. */
static void ws__unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4], unsigned off)
{
    size_t i = 0;
    if (n >= 16) {
        uint8_t m8[8];
        uint64_t m, v;
        for (unsigned k = 0; k < 8; k++) m8[k] = mask[(off + k) & 3];
        memcpy(&m, m8, 8);
        for (; i + 8 <= n; i += 8) {
            memcpy(&v, src + i, 8);
            v ^= m;
            memcpy(dst + i, &v, 8);
        }
    }
    for (; i < n; i++) dst[i] = src[i] ^ mask[(off + i) & 3];
}

/* RFC 6455 7.4: codes a peer may send. 1012-1014 were registered with IANA
 * after the RFC and are in use; 5000 and up are undefined, so refused. */
static int ws__close_code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
}

/* Checks the first header byte against the message in progress. */
static int ws__check_byte0(const ws_reader *r, uint8_t b0)
{
    if (b0 & 0x70) return IY_EPROTO;                 /* RSV bits: no extension negotiated */
    switch (b0 & 0x0f) {
    case WS_OP_CONT:
        return r->msg_op ? 0 : IY_EPROTO;            /* nothing to continue */
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        return r->msg_op ? IY_EPROTO : 0;            /* previous message unfinished */
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        return (b0 & 0x80) ? 0 : IY_EPROTO;          /* control frames are never fragmented */
    default:
        return IY_EPROTO;
    }
}

/* Checks the second header byte: mask bit and control frame length. */
static int ws__check_byte1(uint8_t b0, uint8_t b1)
{
    unsigned len7 = b1 & 0x7f;
    if (!(b1 & 0x80)) return IY_EPROTO;              /* clients must mask */
    if (b0 & 0x08) {
        if (len7 > WS_CTL_MAX) return IY_EPROTO;
        if ((b0 & 0x0f) == WS_OP_CLOSE && len7 == 1) return IY_EPROTO;
    }
    return 0;
}

/* HEADER state: takes header bytes from data[*pos..len). Returns 1 once the
 * header is complete (frame fields set), 0 if more bytes are needed (all
 * consumed), or a negative error. */
static int ws__read_header(ws_reader *r, const uint8_t *data, size_t len, size_t *pos)
{
    size_t avail = len - *pos, take, need;
    unsigned len7;
    uint64_t plen;
    const uint8_t *m;
    int rc;

    if (r->hdr_len < 2) {
        take = 2u - r->hdr_len;
        if (take > avail) take = avail;
        memcpy(r->hdr + r->hdr_len, data + *pos, take);
        r->hdr_len += (uint8_t)take;
        *pos += take;
        avail -= take;
        if (r->hdr_len >= 1 && (rc = ws__check_byte0(r, r->hdr[0])) < 0) return rc;
        if (r->hdr_len < 2) return 0;
        if ((rc = ws__check_byte1(r->hdr[0], r->hdr[1])) < 0) return rc;
    }
    len7 = r->hdr[1] & 0x7f;
    need = 6u + (len7 == 126 ? 2u : len7 == 127 ? 8u : 0u);
    take = need - r->hdr_len;
    if (take > avail) take = avail;
    memcpy(r->hdr + r->hdr_len, data + *pos, take);
    r->hdr_len += (uint8_t)take;
    *pos += take;
    if (r->hdr_len < need) return 0;

    plen = len7;
    m = r->hdr + 2;
    if (len7 == 126) {
        plen = (uint64_t)r->hdr[2] << 8 | r->hdr[3];
        m = r->hdr + 4;
    } else if (len7 == 127) {
        plen = 0;
        for (int i = 2; i < 10; i++) plen = plen << 8 | r->hdr[i];
        if (plen >> 63) return IY_EPROTO;
        m = r->hdr + 10;
    }
    r->op = r->hdr[0] & 0x0f;
    r->fin = r->hdr[0] >> 7;
    if (!(r->op & 0x08)) {
        /* Refuse before buffering a byte: msg_len <= max_message always. */
        if (plen > (uint64_t)(r->max_message - r->msg_len)) return IY_ETOOBIG;
        if (r->op != WS_OP_CONT) {
            r->msg_op = r->op;
            memset(&r->utf8, 0, sizeof r->utf8);
        }
    }
    memcpy(r->mask, m, 4);
    r->mask_pos = 0;
    r->remaining = (uint32_t)plen;
    return 1;
}

/* Makes room for n more bytes in buf. Grows by half again (amortised O(1)
 * over many small fragments), never past what the limits can need. */
static int ws__reserve(ws_reader *r, size_t n)
{
    size_t need = (size_t)r->blen + n, cap, limit;
    uint8_t *p;
    if (need <= r->cap) return 0;
    limit = (size_t)r->max_message + WS_CTL_MAX;
    cap = (size_t)r->cap + r->cap / 2;
    if (cap < WS_MIN_CAP) cap = WS_MIN_CAP;
    if (cap < need) cap = need;
    if (cap > limit) cap = limit;
    if (cap < need) return IY_ETOOBIG;               /* cannot happen: headers are checked */
    p = iy_try_realloc(r->buf, cap);
    if (!p) return IY_ENOMEM;
    r->buf = p;
    r->cap = (uint32_t)cap;
    return 0;
}

/* PAYLOAD state: unmasks n bytes of src into buf, validating text. */
static int ws__take_payload(ws_reader *r, const uint8_t *src, size_t n)
{
    uint8_t *dst;
    int rc = ws__reserve(r, n);
    if (rc < 0) return rc;
    dst = r->buf + r->blen;
    ws__unmask(dst, src, n, r->mask, r->mask_pos);
    r->mask_pos = (uint8_t)((r->mask_pos + n) & 3);
    if (!(r->op & 0x08)) {
        if (r->msg_op == WS_OP_TEXT && iy_utf8_feed(&r->utf8, dst, n) < 0) return IY_EUTF8;
        r->msg_len += (uint32_t)n;
    }
    r->blen += (uint32_t)n;
    r->remaining -= (uint32_t)n;
    return 0;
}

/* Fills ev for the control frame r->op whose unmasked payload is p[0..n). */
static int ws__control_event(const ws_reader *r, const uint8_t *p, size_t n, ws_event *ev)
{
    switch (r->op) {
    case WS_OP_PING: ev->kind = WS_PING; break;
    case WS_OP_PONG: ev->kind = WS_PONG; break;
    default:
        ev->kind = WS_CLOSE;
        if (n == 0) {
            ev->close_code = 1005;
            break;
        }
        /* n == 1 was refused from the header. */
        ev->close_code = (uint16_t)(p[0] << 8 | p[1]);
        if (!ws__close_code_ok(ev->close_code)) return IY_EPROTO;
        if (iy_utf8_validate((const char *)p + 2, n - 2) < 0) return IY_EUTF8;
        p += 2;
        n -= 2;
        break;
    }
    ev->data = p;
    ev->len = n;
    return 0;
}

/* The current frame is complete and was buffered. Returns 1 if ev was
 * filled, 0 for a non-final fragment, or a negative error. */
static int ws__frame_done(ws_reader *r, ws_event *ev)
{
    const uint8_t *base = r->buf ? r->buf : ws__empty;
    int rc;
    if (r->op & 0x08) {
        r->release = 1;                              /* drop the payload after the call */
        rc = ws__control_event(r, base + r->msg_len, r->blen - r->msg_len, ev);
        return rc < 0 ? rc : 1;
    }
    if (!r->fin) return 0;
    if (r->msg_op == WS_OP_TEXT && !iy_utf8_done(&r->utf8)) return IY_EUTF8;
    ev->kind = r->msg_op == WS_OP_TEXT ? WS_TEXT : WS_BINARY;
    ev->data = base;
    ev->len = r->msg_len;
    r->msg_op = 0;
    r->msg_len = 0;
    r->release = 1;
    return 1;
}

/* The whole payload p[0..n) of a control frame or an unfragmented data
 * frame is in the caller's bytes, already unmasked in place. */
static int ws__direct_event(ws_reader *r, const uint8_t *p, size_t n, ws_event *ev)
{
    if (r->op & 0x08) return ws__control_event(r, n ? p : ws__empty, n, ev);
    if (r->op == WS_OP_TEXT && iy_utf8_validate((const char *)p, n) < 0) return IY_EUTF8;
    ev->kind = r->op == WS_OP_TEXT ? WS_TEXT : WS_BINARY;
    ev->data = n ? p : ws__empty;
    ev->len = n;
    r->msg_op = 0;
    return 0;
}

int ws_reader_feed(ws_reader *r, uint8_t *data, size_t len, size_t *consumed, ws_event *ev)
{
    size_t pos = 0, n;
    int rc;

    memset(ev, 0, sizeof *ev);
    *consumed = 0;
    if (r->err) return r->err;
    if (r->release) {
        /* The previous event may have pointed into buf; it is dead now. */
        r->release = 0;
        r->blen = r->msg_len;
        if (r->msg_len == 0 && r->cap > WS_KEEP_MAX) {
            iy_free(r->buf);
            r->buf = NULL;
            r->cap = 0;
        }
    }
    if (len == 0) return 0;                          /* (data may be NULL) */
    for (;;) {
        if (r->state == ST_HEADER) {
            rc = ws__read_header(r, data, len, &pos);
            if (rc < 0) goto err;
            if (rc == 0) break;                      /* all consumed, header incomplete */
            r->hdr_len = 0;
            if (((r->op & 0x08) || (r->fin && r->op != WS_OP_CONT)) && r->remaining <= len - pos) {
                uint8_t *p = data + pos;
                ws__unmask(p, p, r->remaining, r->mask, 0);
                pos += r->remaining;
                n = r->remaining;
                r->remaining = 0;
                if ((rc = ws__direct_event(r, p, n, ev)) < 0) goto err;
                break;
            }
            r->state = ST_PAYLOAD;
        }
        if (r->remaining > 0) {
            if (pos == len) break;
            n = len - pos;
            if (n > r->remaining) n = r->remaining;
            if ((rc = ws__take_payload(r, data + pos, n)) < 0) goto err;
            pos += n;
            if (r->remaining > 0) break;             /* all consumed */
        }
        r->state = ST_HEADER;
        rc = ws__frame_done(r, ev);
        if (rc < 0) goto err;
        if (rc > 0) break;
    }
    *consumed = pos;
    return 0;

err:
    memset(ev, 0, sizeof *ev);
    r->err = (int8_t)rc;
    *consumed = pos;
    return rc;
}

size_t ws_frame_header(uint8_t out[10], int opcode, uint64_t payload_len)
{
    out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (payload_len <= 125) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}

void ws_frame_append(iy_buf *out, int opcode, const void *payload, size_t len)
{
    uint8_t h[10];
    size_t hn = ws_frame_header(h, opcode, len);
    iy_buf_reserve(out, hn + len);
    iy_buf_append(out, h, hn);
    iy_buf_append(out, payload, len);
}

void ws_close_append(iy_buf *out, uint16_t code, const char *reason)
{
    uint8_t p[WS_CTL_MAX];
    size_t rlen = reason ? strlen(reason) : 0;
    if (code == 1005) {
        ws_frame_append(out, WS_OP_CLOSE, NULL, 0);
        return;
    }
    if (rlen > WS_CTL_MAX - 2) {
        rlen = WS_CTL_MAX - 2;
        /* Do not cut a character: back up to the start of the one cut. */
        while (rlen > 0 && ((uint8_t)reason[rlen] & 0xC0) == 0x80) rlen--;
    }
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rlen) memcpy(p + 2, reason, rlen);
    ws_frame_append(out, WS_OP_CLOSE, p, 2 + rlen);
}

void ws_client_frame_append(iy_buf *out, int opcode, int fin, const void *payload, size_t len,
                            const uint8_t mask[4])
{
    uint8_t h[14];
    size_t hn = ws_frame_header(h, 0, len);
    h[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x7f));
    if (mask) {
        h[1] |= 0x80;
        memcpy(h + hn, mask, 4);
        hn += 4;
    }
    iy_buf_reserve(out, hn + len);
    iy_buf_append(out, h, hn);
    if (len) {
        if (mask) ws__unmask((uint8_t *)out->data + out->len, payload, len, mask, 0);
        else memcpy(out->data + out->len, payload, len);
        out->len += len;
    }
}

static int ws__b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int ws_accept_key(const char *key, size_t key_len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char in[24 + sizeof guid - 1], md[SHA_DIGEST_LENGTH];

    if (key_len != 24 || key[22] != '=' || key[23] != '=') return IY_EINVAL;
    for (size_t i = 0; i < 22; i++)
        if (!ws__b64_char(key[i])) return IY_EINVAL;
    memcpy(in, key, 24);
    memcpy(in + 24, guid, sizeof guid - 1);
    /* The one-shot SHA1() fails only if OpenSSL cannot allocate. */
    if (!SHA1(in, sizeof in, md)) return IY_ENOMEM;
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);   /* 28 chars + NUL */
    return 0;
}
