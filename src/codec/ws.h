/* ws.h — the RFC 6455 WebSocket frame codec, server side, sans I/O.
 *
 * The reader takes the bytes a client sent (in whatever pieces the socket
 * delivered them) and gives back events: a whole text or binary message
 * (fragments reassembled, unmasked, text UTF-8 validated) or one control
 * frame (ping, pong, close). The writers append server frames (FIN set, not
 * masked) to an iy_buf. Nothing here touches a socket, a clock or a log:
 * that is the transport's job, which also answers pings and closes.
 *
 * Frame-parsing state machine of ws_reader_feed (one frame at a time):
 *
 *        +---------------------------------------------------------+
 *        v                                                         |
 *   +---------+  2..14 header bytes   +---------+  payload bytes   |
 *   | HEADER  |---------------------->| PAYLOAD |--(unmask, copy,  |
 *   | (hdr[]) |  checks: RSV, opcode, | (buf)   |   UTF-8 check)---+
 *   +---------+  mask bit, lengths,   +---------+   frame complete:
 *     |     |    fragment order           |         control -> event
 *     |     |                             |         FIN data -> event
 *     |     +-- whole payload already in  |         !FIN data -> HEADER
 *     |         `data` and frame is a     |
 *     |         control or an unfragmented|
 *     |         data frame: unmask in     |
 *     |         place, event points into  |
 *     |         `data` (no copy)          |
 *     |                                   |
 *     +------ any violation --------------+-----> DEAD (every later call
 *                                                  returns the same error)
 *
 * Invariants: in HEADER, hdr_len < the header size announced so far; in
 * PAYLOAD, `remaining` payload bytes of the current frame are still to come.
 * The internal buffer holds only the message being reassembled (fragments,
 * or an unfragmented frame split across reads), followed while it arrives by
 * the payload of a partial control frame interleaved between fragments; a
 * control frame therefore never disturbs the message in progress.
 *
 * Memory: a ws_reader is well under 100 bytes plus that buffer, which is
 * allocated only when a frame must be buffered, grows with the bytes that
 * actually arrive (never to an announced size up front), and is freed after a
 * message is delivered if it grew past 16 KiB. Allocation of the buffer uses
 * the try_ path (IY_ENOMEM) since its size is peer-controlled. */
#ifndef IY_WS_H
#define IY_WS_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"

/* Frame opcodes (RFC 6455 5.2). */
enum { WS_OP_CONT = 0, WS_OP_TEXT = 1, WS_OP_BINARY = 2, WS_OP_CLOSE = 8, WS_OP_PING = 9, WS_OP_PONG = 10 };

/* What ws_reader_feed produced. */
typedef enum ws_kind { WS_NONE = 0, WS_TEXT, WS_BINARY, WS_PING, WS_PONG, WS_CLOSE } ws_kind;

typedef struct ws_event {
    ws_kind kind;
    const uint8_t *data;   /* whole (reassembled, unmasked) message or control payload */
    size_t len;            /* for WS_CLOSE: data/len is the reason text (after the 2-byte code) */
    uint16_t close_code;   /* WS_CLOSE only: the code received, 1005 if the payload was empty */
} ws_event;

typedef struct ws_reader ws_reader;

/* A reader for one server-side connection: client frames must be masked.
 * max_message bounds a whole reassembled message (and so any data frame) in
 * bytes; values above 1 GiB are clamped to 1 GiB. Aborts on out-of-memory
 * (alloc.h policy). Free with ws_reader_free(). */
ws_reader *ws_reader_new(size_t max_message);

/* Frees the reader and its buffer. Accepts NULL. */
void ws_reader_free(ws_reader *r);

/* Bytes r holds (itself and its buffer). */
size_t ws_reader_mem(const ws_reader *r);
/* 1 if r is between messages with nothing buffered (no frame header,
 * payload, fragmented message or error in progress): freeing it and
 * starting a new reader for the next bytes loses nothing. Between calls to
 * ws_reader_feed only (the last event's data dies with it). */
int ws_reader_idle(const ws_reader *r);

/* Consumes bytes from data[0..len); data is mutable: the reader may unmask in
 * place. Returns 0 and sets *consumed. When a complete message (data frames
 * reassembled) or a control frame is ready it stops right after that frame
 * and fills *ev (kind != WS_NONE); ev->data points into data or into the
 * reader's own buffer and is valid until the next call (and while `data` is).
 * The caller calls again with data + *consumed until ev->kind == WS_NONE,
 * which means everything was consumed and more bytes are needed.
 * Errors (negative; *ev is WS_NONE; the reader is then dead and returns the
 * same error on every later call):
 *   IY_EPROTO  (close 1002) framing violation: unmasked frame, RSV bit, unknown
 *              opcode, bad control frame, fragment out of order, 64-bit length
 *              with the top bit set, close payload of 1 byte or invalid code;
 *   IY_EUTF8   (1007) text message or close reason not valid UTF-8 (detected as
 *              soon as the bytes arrive; a message ending mid-character fails
 *              at its final fragment);
 *   IY_ETOOBIG (1009) a message or frame over max_message, detected from the
 *              length header before any of its payload is buffered;
 *   IY_ENOMEM  (1011) the buffer could not grow. */
int ws_reader_feed(ws_reader *r, uint8_t *data, size_t len, size_t *consumed, ws_event *ev);

/* The close code to send for an error of ws_reader_feed: IY_EPROTO->1002,
 * IY_EUTF8->1007, IY_ETOOBIG->1009, anything else->1011. */
uint16_t ws_close_code_for(int err);

/* Writes a server frame header (FIN set, unmasked) for opcode and
 * payload_len into out. Returns its size: 2, 4 or 10 bytes. */
size_t ws_frame_header(uint8_t out[10], int opcode, uint64_t payload_len);

/* Appends a whole server frame (header + payload) to out. Aborts on OOM. */
void ws_frame_append(iy_buf *out, int opcode, const void *payload, size_t len);

/* Appends a close frame with code and reason (NULL for none) to out. The
 * reason is cut to 123 bytes (a control payload is at most 125) at a UTF-8
 * character boundary. code 1005 ("no status") appends an empty close frame,
 * since 1005 must never be sent on the wire. */
void ws_close_append(iy_buf *out, uint16_t code, const char *reason);

/* Appends a client frame, as a browser would send it, for tests and the
 * benchmark: FIN if fin != 0, payload masked with mask. For crafting bad
 * frames: opcode bits 4..6 become the RSV1..3 bits, and mask == NULL writes
 * an unmasked frame. */
void ws_client_frame_append(iy_buf *out, int opcode, int fin, const void *payload, size_t len,
                            const uint8_t mask[4]);

/* Computes Sec-WebSocket-Accept for the request's Sec-WebSocket-Key
 * key[0..key_len): base64(SHA-1(key + RFC 6455 GUID)), 28 characters plus a
 * NUL, into out. Returns 0, or IY_EINVAL if key is not 24 characters of
 * base64 of 16 bytes (22 base64 characters then "=="), or IY_ENOMEM in the
 * unlikely case OpenSSL cannot allocate its digest context. */
int ws_accept_key(const char *key, size_t key_len, char out[29]);

#endif
