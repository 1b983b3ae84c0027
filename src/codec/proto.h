/* proto.h — the JSON codec of the client protocol (shared/PROTOCOL.md).
 *
 * Two halves, neither doing I/O:
 *   - proto_parse() turns one WebSocket text frame from a client into a
 *     proto_req, checking every field against the contract, so that the
 *     chat core only ever sees well-formed requests;
 *   - the proto_write_*() encoders append the contract's objects (user,
 *     channel, message, error) to an iy_buf, for WebSocket frames and HTTP
 *     bodies alike.
 * proto_parse_id() and proto_check_text() are the shared validation rules,
 * also used by the HTTP API, so both transports accept exactly the same ids
 * and texts.
 *
 * Errors follow base/err.h: IY_EINVAL maps to the contract's "bad_request",
 * IY_ETOOBIG to "too_large". Error messages written to errmsg are short,
 * plain ASCII, and safe to put in an error frame as they are. */
#ifndef IY_PROTO_H
#define IY_PROTO_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"
#include "../base/limits.h"
#include "../model/types.h"

/* The client -> server ops. */
enum proto_op { P_AUTH = 1, P_SEND, P_SYNC, P_HISTORY, P_READ, P_TYPING, P_PRESENCE, P_HB, P_EDIT, P_DELETE, P_REACT };

/* Largest integer a JavaScript client can send exactly: the bound of every
 * number a client gives (seq, pos), over WebSocket and HTTP alike. */
#define PROTO_INT_MAX ((long long)1 << 53)
#define IY_TOKEN_MAX 256   /* bytes of a session token in "auth" */

/* One parsed client request. Fields not used by op are zero. */
typedef struct proto_req {
    int op;                                 /* enum proto_op */
    char rid[IY_RID_MAX + 1]; int has_rid;  /* any op; "" is a valid rid */
    char token[IY_TOKEN_MAX + 1];           /* auth: 1..256 bytes */
    uint64_t to, channel;                   /* send (exactly one), history/read/typing (channel) */
    uint64_t id;                            /* edit, delete, react: the message */
    int on;                                 /* react: add (1) or take back (0) */
    uint64_t reply_to;                      /* send, optional: the message it replies to */
    uint64_t attachments[IY_ATTACH_PER_MSG]; uint32_t nattachments;  /* send, optional: upload ids
                                               (then text may be empty or absent) */
    char *text; size_t text_len;            /* send, edit: malloc'd copy owned by the req, NUL-terminated; may contain U+0000;
                                               react: the emoji, 1..IY_EMOJI_MAX bytes, no U+0000 */
    char cmid[IY_CMID_MAX + 1]; int has_cmid; /* send, optional, 1..64 bytes */
    uint64_t after; int limit;              /* sync: after (default 0), limit 1..IY_SYNC_MAX default IY_SYNC_DEFAULT;
                                               history: limit 1..IY_PAGE_MAX default IY_PAGE_DEFAULT */
    uint64_t before_seq, after_seq; int has_before, has_after;  /* history: at most one of these three; neither = newest page;
                                                                   before_seq >= 1, after_seq >= 0 */
    uint64_t around_seq; int has_around;    /* history: around_seq >= 1 */
    uint64_t seq;                           /* read */
    uint64_t *users; size_t nusers;         /* presence: malloc'd, 1..IY_PRESENCE_QUERY_MAX ids */
} proto_req;

/* Parses one client frame json[0..len) (not NUL-terminated) into *req,
 * which it zeroes first (so a req still holding memory must be cleared
 * before it is reused).
 * Returns 0, or with a short human message in errmsg (errsz bytes, may be 0):
 *   IY_EINVAL   not a JSON object, unknown op, a field missing or malformed
 *               ("bad_request")
 *   IY_ETOOBIG  a field over its size limit, or len > IY_JSON_MAX ("too_large")
 * On error req->rid/has_rid are still filled when the frame was a JSON
 * object with a valid rid, so that the error frame can echo it. Always call
 * proto_req_clear() afterwards, also after errors.
 * Numbers (seq, after, before_seq, after_seq, limit) must be JSON integers in
 * 0..2^53; ids must be JSON strings (see proto_parse_id); a field set to null
 * counts as absent; unknown fields are ignored. */
int proto_parse(const char *json, size_t len, proto_req *req, char *errmsg, size_t errsz);

/* Frees what proto_parse() allocated and zeroes *req. Accepts a zeroed req. */
void proto_req_clear(proto_req *req);

/* Parses an id: 1 to 20 decimal digits, no sign, no leading zero, nonzero,
 * at most UINT64_MAX. Returns 0 with *out, or IY_EINVAL. */
int proto_parse_id(const char *s, size_t n, uint64_t *out);

/* Checks a reaction: valid UTF-8, 1..IY_EMOJI_MAX bytes, no U+0000, no
 * control or space characters (below U+0021). Returns 0 or IY_EINVAL. */
int proto_check_emoji(const char *s, size_t n);

/* {"id","name","type","size"[,"thumb":true]}: an attachment as uploads
 * answer it and as messages show it. */
void proto_write_attachment(iy_buf *b, uint64_t id, const char *name, const char *type, uint64_t size, int thumb);

/* A send's "attachments" (a JSON array of 1..IY_ATTACH_PER_MSG upload
 * ids, as strings; v is a json_t *, NULL or null: none): 0 with out[0..*n),
 * or IY_EINVAL with a message in errmsg. */
int proto_parse_attachments(const void *v, uint64_t out[IY_ATTACH_PER_MSG], uint32_t *n, char *errmsg,
                            size_t errsz);

/* Checks a message text: valid UTF-8 and 1..IY_TEXT_MAX_CP code points.
 * Returns 0, IY_EINVAL (empty or invalid UTF-8), IY_ETOOBIG (more than
 * IY_TEXT_MAX_CP code points), with a message in errmsg on error. */
int proto_check_text(const char *s, size_t n, char *errmsg, size_t errsz);

/* ---- encoders: each appends one JSON object, no trailing newline -------- */

/* {"id","username","display_name"} */
void proto_write_user(iy_buf *b, const iy_user *u);

/* {"id","kind":"direct"|"group","name" (groups),"members":[ids] (with_members),
 *  "owner" (groups)} */
void proto_write_channel(iy_buf *b, const iy_channel *c, int with_members);

/* {"id","channel","seq","pos" (only if m->pos != 0),"from","text","ts",
 *  "cmid" (only if non-empty), event fields, "mentions", "reply_to",
 *  "reply_seq", "edited_at", "deleted" (each only when there is one)} */
void proto_write_message(iy_buf *b, const iy_msg *m);
/* ,"mentions":[id…] when m mentions anyone (nothing otherwise). */
void proto_write_mentions(iy_buf *b, const iy_msg *m);
/* Appends ,"event":"member_added"|"member_removed"|"renamed"[,"user":"<subject>"]
 * for a membership event, ,"event":"edited"|"deleted"|"reaction","target":"<subject>"
 * for a change of a message (a reaction adds "emoji" (the text) and "on");
 * nothing for a plain message. */
void proto_write_event_fields(iy_buf *b, const iy_msg *m);
/* ,"reply_to":"<id>","reply_seq":N when m replies, ,"edited_at":ms when m
 * was edited, ,"deleted":true when deleted,
 * ,"reactions":[{"emoji","count","users":[ids]}] when it has some. */
void proto_write_state(iy_buf *b, const iy_msg *m);

/* The WebSocket error frame: {"op":"error","rid" (if rid != NULL),"code","message"}. */
void proto_write_error(iy_buf *b, const char *rid, const char *code, const char *message);
/* The same with "retry_after_ms" (rate_limited, unavailable) when retry_ms > 0. */
void proto_write_error_retry(iy_buf *b, const char *rid, const char *code, const char *message,
                             int64_t retry_ms);

/* The HTTP error body: {"error":{"code","message"}}. */
void proto_write_http_error(iy_buf *b, const char *code, const char *message);

#endif
