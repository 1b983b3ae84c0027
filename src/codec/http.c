/* http.c — the sans-I/O HTTP/1.1 request codec on llhttp (see http.h).
 *
 * llhttp delivers the URL, header names, header values and body as spans
 * through callbacks, and a span may be cut anywhere by the end of a feed.
 * We copy the pieces we keep (URL, the eight headers we care about, body)
 * into one storage buffer, remembering offsets, and only build the
 * http_request views at message completion: the buffer may move while it
 * grows. Header names are matched in a small fixed array, since the names
 * we keep are short; longer names are simply not ours.
 *
 * Per-message states:
 *
 *   HEAD --on_headers_complete--> BODY --on_message_complete--> DONE
 *    ^                                                            |
 *    +------------------------- http_parser_next() ---------------+
 *   any --error--> DEAD (terminal; status is 400, 413 or 431)
 *
 *   HEAD: head_bytes counts the bytes of this head. Feeds are sliced so
 *         that llhttp never sees more than max_head of them, and our
 *         on_headers_complete pauses llhttp so that the count is exact: a
 *         head that has not ended after max_head bytes is a 431, however
 *         the input was cut.
 *   BODY: body_len <= max_body; frame_bytes (bytes that are not body:
 *         chunk lines, trailers) <= max_head + max_body.
 *   DONE: req is valid; llhttp is paused (HPE_PAUSED from our
 *         on_message_complete, or HPE_PAUSED_UPGRADE, which llhttp raises by
 *         itself after an upgrade request) so it stops exactly at the end of
 *         the message; the pause position tells how many bytes were used.
 */
#include "http.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define HTTP_IDLE_KEEP 16384     /* storage kept across requests, at most */
#define HTTP_NAME_MAX 32         /* longer than any header name we keep */

enum { ST_HEAD, ST_BODY, ST_DONE, ST_DEAD };

enum {
    H_AUTHORIZATION, H_CONTENT_TYPE, H_HOST, H_UPGRADE, H_CONNECTION,
    H_WS_KEY, H_WS_VERSION, H_ORIGIN, H_FORWARDED_FOR, H_EXPECT, H_FORWARDED_PROTO, H_AC_METHOD, H_COUNT
};

static const char *const hdr_names[H_COUNT] = {
    "authorization", "content-type", "host", "upgrade", "connection",
    "sec-websocket-key", "sec-websocket-version", "origin", "x-forwarded-for", "expect",
    "x-forwarded-proto", "access-control-request-method",
};

typedef struct span {
    size_t off, len;
} span;

struct http_parser {
    llhttp_t ll;
    size_t max_head, max_body;
    size_t max_frame;            /* max_head + max_body, saturated */
    int state;
    int status;                  /* 400/413/431 once dead; 413/431 set by callbacks before failing */
    size_t head_bytes;           /* HEAD: bytes of this head given to llhttp */
    size_t frame_bytes;          /* BODY: non-body bytes after the head */
    size_t declared;             /* BODY: the Content-Length (max_body if chunked) */
    iy_buf store;                /* URL, kept header values, body */
    span url;
    span hdr[H_COUNT];
    span body;
    int url_started, body_started;
    /* Streamed bodies (http.h): */
    int head_stop;               /* stop after the head of a request with a body */
    int head_told;               /* this request's head was returned by http_parser_head */
    int streaming;               /* this request's body goes to `chunk`, not to store */
    uint64_t stream_max, streamed;
    iy_buf chunk;                /* body bytes of the last feed, streaming */
    int cur_hdr;                 /* header whose value is being read, -1 if not ours */
    int value_started;
    size_t cur_off;              /* where the current value starts in store */
    size_t name_len;             /* > HTTP_NAME_MAX: name too long to be ours */
    char name[HTTP_NAME_MAX];
    http_request req;
};

static http_parser *parser_of(llhttp_t *ll) { return ll->data; }

/* ---- llhttp callbacks ---------------------------------------------------- */

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    http_parser *p = parser_of(ll);
    if (!p->url_started) {
        p->url_started = 1;
        p->url.off = p->store.len;
    }
    iy_buf_append(&p->store, at, n);
    p->url.len += n;
    return 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
    http_parser *p = parser_of(ll);
    if (p->state != ST_HEAD) return 0;           /* a trailer: never ours */
    if (p->name_len + n > HTTP_NAME_MAX) {
        p->name_len = HTTP_NAME_MAX + 1;
        return 0;
    }
    memcpy(p->name + p->name_len, at, n);
    p->name_len += n;
    return 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
    http_parser *p = parser_of(ll);
    p->cur_hdr = -1;
    p->value_started = 0;
    if (p->state == ST_HEAD && p->name_len <= HTTP_NAME_MAX) {
        for (int i = 0; i < H_COUNT; i++) {
            if (strlen(hdr_names[i]) == p->name_len &&
                strncasecmp(hdr_names[i], p->name, p->name_len) == 0) {
                p->cur_hdr = i;
                break;
            }
        }
    }
    p->name_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
    http_parser *p = parser_of(ll);
    if (p->cur_hdr < 0) return 0;
    if (!p->value_started) {
        p->value_started = 1;
        p->cur_off = p->store.len;
    }
    iy_buf_append(&p->store, at, n);
    return 0;
}

static int on_header_value_complete(llhttp_t *ll)
{
    http_parser *p = parser_of(ll);
    if (p->cur_hdr >= 0) {               /* last one wins */
        span *h = &p->hdr[p->cur_hdr];
        h->off = p->value_started ? p->cur_off : 0;
        h->len = p->value_started ? p->store.len - p->cur_off : 0;
    }
    p->cur_hdr = -1;
    p->value_started = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
    http_parser *p = parser_of(ll);
    p->state = ST_BODY;
    p->declared = (ll->flags & F_CHUNKED) ? p->max_body
                  : (ll->flags & F_CONTENT_LENGTH) ? (size_t)ll->content_length : 0;
    /* Refuse a declared body before reading any of it (with head_stop, the
     * caller may still take it as a stream: checked when it does not). */
    if (!p->head_stop && (ll->flags & F_CONTENT_LENGTH) && !(ll->flags & F_CHUNKED) &&
        ll->content_length > p->max_body) {
        p->status = 413;
        return -1;
    }
    return HPE_PAUSED;   /* lets feed count the head bytes exactly */
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
    http_parser *p = parser_of(ll);
    if (p->streaming) {
        if (n > p->stream_max - p->streamed) {
            p->status = 413;
            return HPE_USER;
        }
        p->streamed += n;
        iy_buf_append(&p->chunk, at, n);
        return 0;
    }
    if (n > p->max_body - p->body.len) {
        p->status = 413;
        return HPE_USER;
    }
    if (!p->body_started) {
        p->body_started = 1;
        p->body.off = p->store.len;
    }
    iy_buf_append(&p->store, at, n);
    p->body.len += n;
    return 0;
}

static iy_str trim(const char *s, size_t n)
{
    while (n && (s[0] == ' ' || s[0] == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    return (iy_str){ s, n };
}

/* 1 if the comma-separated list v holds token tok (ASCII case-insensitive). */
static int has_token(iy_str v, const char *tok)
{
    size_t i = 0;
    while (i <= v.len) {
        size_t j = i;
        while (j < v.len && v.ptr[j] != ',') j++;
        if (iy_str_ieq(trim(v.ptr + i, j - i), tok)) return 1;
        i = j + 1;
    }
    return 0;
}

/* Splits the raw request target into path and query, dropping a fragment
 * and reducing an absolute-form target ("http://host/p?q") to its path. */
static void split_url(iy_str url, iy_str *path, iy_str *query)
{
    const char *s = url.ptr, *end = url.ptr + url.len;
    const char *hash = memchr(s, '#', url.len);
    if (hash) end = hash;
    if (s < end && *s != '/') {
        const char *sep = NULL;
        for (const char *c = s; c + 2 < end; c++) {
            if (c[0] == ':' && c[1] == '/' && c[2] == '/') { sep = c + 3; break; }
            if (c[0] == '/' || c[0] == '?') break;
        }
        if (sep) {
            while (sep < end && *sep != '/' && *sep != '?') sep++;
            s = sep;
        }
    }
    const char *q = memchr(s, '?', (size_t)(end - s));
    const char *pend = q ? q : end;
    *path = pend > s ? (iy_str){ s, (size_t)(pend - s) } : IY_STR("/");
    *query = q ? (iy_str){ q + 1, (size_t)(end - q - 1) } : IY_STR("");
}

static iy_str view(const http_parser *p, span sp)
{
    if (!sp.len) return IY_STR("");
    return trim(p->store.data + sp.off, sp.len);
}

/* The method, URL and kept headers of the request being parsed. */
static void fill_head(http_parser *p, http_request *r, iy_str url)
{
    r->method = llhttp_get_method(&p->ll);
    split_url(url, &r->path, &r->query);
    r->authorization = view(p, p->hdr[H_AUTHORIZATION]);
    r->content_type = view(p, p->hdr[H_CONTENT_TYPE]);
    r->host = view(p, p->hdr[H_HOST]);
    r->upgrade = view(p, p->hdr[H_UPGRADE]);
    r->connection = view(p, p->hdr[H_CONNECTION]);
    r->ws_key = view(p, p->hdr[H_WS_KEY]);
    r->ws_version = view(p, p->hdr[H_WS_VERSION]);
    r->origin = view(p, p->hdr[H_ORIGIN]);
    r->forwarded_for = view(p, p->hdr[H_FORWARDED_FOR]);
    r->expect = view(p, p->hdr[H_EXPECT]);
    r->forwarded_proto = view(p, p->hdr[H_FORWARDED_PROTO]);
    r->ac_request_method = view(p, p->hdr[H_AC_METHOD]);
}

static int on_message_complete(llhttp_t *ll)
{
    http_parser *p = parser_of(ll);
    http_request *r = &p->req;
    iy_str url = p->url.len ? (iy_str){ p->store.data + p->url.off, p->url.len } : IY_STR("");

    p->state = ST_DONE;
    fill_head(p, r, url);
    r->body = p->body.len ? p->store.data + p->body.off : "";
    r->streamed = p->streaming;
    r->body_len = p->body.len;
    /* Must be read here: llhttp clears its flags right after this callback. */
    r->keep_alive = llhttp_should_keep_alive(ll);
    r->websocket = r->method == HTTP_GET && has_token(r->upgrade, "websocket") &&
                   has_token(r->connection, "upgrade");
    /* An upgrade makes llhttp stop by itself with HPE_PAUSED_UPGRADE. */
    return ll->upgrade ? 0 : HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- the parser ---------------------------------------------------------- */

static void reset_message(http_parser *p)
{
    p->state = ST_HEAD;
    p->head_bytes = p->frame_bytes = 0;
    if (p->store.cap > HTTP_IDLE_KEEP) iy_buf_free(&p->store);
    else iy_buf_reset(&p->store);
    memset(&p->url, 0, sizeof p->url);
    memset(p->hdr, 0, sizeof p->hdr);
    memset(&p->body, 0, sizeof p->body);
    p->url_started = p->body_started = 0;
    p->head_told = p->streaming = 0;
    p->stream_max = p->streamed = 0;
    if (p->chunk.cap > HTTP_IDLE_KEEP) iy_buf_free(&p->chunk);
    else iy_buf_reset(&p->chunk);
    p->cur_hdr = -1;
    p->value_started = 0;
    p->cur_off = 0;
    p->name_len = 0;
    memset(&p->req, 0, sizeof p->req);
}

http_parser *http_parser_new(size_t max_head, size_t max_body)
{
    http_parser *p = iy_calloc(1, sizeof *p);
    p->max_head = max_head;
    p->max_body = max_body;
    p->max_frame = max_head + max_body < max_head ? SIZE_MAX : max_head + max_body;
    llhttp_init(&p->ll, HTTP_REQUEST, &settings);
    p->ll.data = p;
    reset_message(p);
    return p;
}

size_t http_parser_mem(const http_parser *p)
{
    return p ? sizeof *p + p->store.cap + p->chunk.cap : 0;
}

void http_parser_free(http_parser *p)
{
    if (!p) return;
    iy_buf_free(&p->store);
    iy_buf_free(&p->chunk);
    iy_free(p);
}

static int fail(http_parser *p)
{
    if (!p->status) p->status = 400;
    p->state = ST_DEAD;
    return p->status == 400 ? IY_EPROTO : IY_ETOOBIG;
}

int http_parser_feed(http_parser *p, const char *data, size_t len, size_t *consumed,
                     const http_request **req)
{
    size_t off = 0;
    int again = 0;

    *consumed = 0;
    *req = NULL;
    iy_buf_reset(&p->chunk);
    if (p->state == ST_DEAD) return p->status == 400 ? IY_EPROTO : IY_ETOOBIG;
    if (p->state == ST_BODY && p->head_told && !p->streaming && p->declared > p->max_body &&
        !(p->ll.flags & F_CHUNKED)) {
        p->status = 413;            /* told, not taken as a stream: the usual limit */
        return fail(p);
    }
    if (p->state == ST_DONE) {
        *req = &p->req;
        return 0;
    }
    /* Each round runs llhttp on one slice; it stops early at a pause: the
     * end of the head (so head bytes are counted exactly, however the input
     * is cut) or the end of the message. After the head pause llhttp must
     * run once more even on no bytes, to finish a body-less message. */
    while (off < len || again) {
        size_t n = len - off;
        int was_head = p->state == ST_HEAD;
        if (was_head) {
            size_t room = p->max_head - p->head_bytes;
            if (room == 0) {
                p->status = 431;
                return fail(p);
            }
            if (n > room) n = room;
        }
        again = 0;
        size_t body_before = p->body.len + p->chunk.len;
        llhttp_errno_t e = llhttp_execute(&p->ll, data + off, n);
        size_t used = n;
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
            used = (size_t)(llhttp_get_error_pos(&p->ll) - (data + off));
        else if (e != HPE_OK)
            return fail(p);
        off += used;

        if (was_head) {
            p->head_bytes += used;
            if (p->state == ST_HEAD && p->head_bytes >= p->max_head) {   /* full, not ended */
                p->status = 431;
                return fail(p);
            }
        } else {
            size_t body_now = p->body.len + p->chunk.len;
            p->frame_bytes += used - (body_now - body_before);
            if (p->frame_bytes > p->max_frame) {
                p->status = 413;
                return fail(p);
            }
        }
        if (e == HPE_OK) continue;
        if (e == HPE_PAUSED && p->state == ST_BODY) {   /* end of the head */
            llhttp_resume(&p->ll);
            if (p->head_stop && (p->declared > 0 || (p->ll.flags & F_CHUNKED))) {
                /* Its head first: the caller may take the body as a stream. */
                iy_str url = p->url.len ? (iy_str){ p->store.data + p->url.off, p->url.len } : IY_STR("");
                memset(&p->req, 0, sizeof p->req);
                fill_head(p, &p->req, url);
                p->head_told = 1;
                *consumed = off;
                return 0;
            }
            again = 1;
            continue;
        }
        if (p->state != ST_DONE) return fail(p);        /* not our pause */
        *consumed = off;
        *req = &p->req;
        return 0;
    }
    *consumed = off;
    return 0;
}

void http_parser_set_head_stop(http_parser *p, int on) { p->head_stop = on != 0; }

const http_request *http_parser_head(const http_parser *p)
{
    return p->state == ST_BODY && p->head_told && !p->body.len && !p->streamed ? &p->req : NULL;
}

int http_parser_stream_body(http_parser *p, uint64_t max)
{
    if (!http_parser_head(p)) return IY_EINVAL;
    if (!(p->ll.flags & F_CHUNKED) && p->declared > max) {
        p->status = 413;
        p->state = ST_DEAD;
        return IY_ETOOBIG;
    }
    p->streaming = 1;
    p->stream_max = max;
    return 0;
}

const char *http_parser_body_chunk(const http_parser *p, size_t *len)
{
    *len = p->chunk.len;
    return p->chunk.len ? p->chunk.data : NULL;
}

int http_parser_error_status(const http_parser *p)
{
    return p->state == ST_DEAD ? p->status : 0;
}

size_t http_parser_buffered(const http_parser *p) { return p->store.len; }

size_t http_parser_declared(const http_parser *p)
{
    return p->state == ST_BODY ? p->declared : 0;
}

void http_parser_next(http_parser *p)
{
    if (p->state != ST_DONE) return;
    if (llhttp_get_errno(&p->ll) == HPE_PAUSED_UPGRADE) llhttp_resume_after_upgrade(&p->ll);
    else llhttp_resume(&p->ll);
    reset_message(p);
}

/* ---- query strings ------------------------------------------------------- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The next decoded byte of s[*i..n) ('+' is a space in a query, plus
 * set), advancing *i; -1 on a bad %-escape. */
static int pct_next_in(const char *s, size_t n, size_t *i, int plus)
{
    unsigned char c = (unsigned char)s[*i];
    if (c == '+' && plus) {
        (*i)++;
        return ' ';
    }
    if (c != '%') {
        (*i)++;
        return c;
    }
    if (n - *i < 3) return -1;
    int hi = hexval((unsigned char)s[*i + 1]), lo = hexval((unsigned char)s[*i + 2]);
    if (hi < 0 || lo < 0) return -1;
    *i += 3;
    return hi * 16 + lo;
}

static int pct_next(const char *s, size_t n, size_t *i) { return pct_next_in(s, n, i, 1); }

int http_path_decode(iy_str seg, char *out, size_t outsz)
{
    size_t k = 0, o = 0;
    if (outsz == 0) return IY_EINVAL;
    while (k < seg.len) {
        int c = pct_next_in(seg.ptr, seg.len, &k, 0);
        if (c <= 0 || o + 1 >= outsz) return IY_EINVAL;   /* bad escape, NUL, too long */
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return (int)o;
}

/* 1 if the %-decoded key s[0..n) equals name. */
static int key_eq(const char *s, size_t n, const char *name)
{
    size_t i = 0, j = 0;
    while (i < n) {
        int c = pct_next(s, n, &i);
        if (c < 0 || name[j] == '\0' || (unsigned char)name[j] != c) return 0;
        j++;
    }
    return name[j] == '\0';
}

int http_query_get(iy_str query, const char *name, char *out, size_t outsz)
{
    size_t i = 0;
    while (i < query.len) {
        size_t j = i;
        while (j < query.len && query.ptr[j] != '&') j++;
        const char *pair = query.ptr + i;
        size_t plen = j - i;
        const char *eq = memchr(pair, '=', plen);
        size_t klen = eq ? (size_t)(eq - pair) : plen;
        if (key_eq(pair, klen, name)) {
            const char *v = eq ? eq + 1 : pair + plen;
            size_t vlen = (size_t)(pair + plen - v), k = 0, o = 0;
            if (outsz == 0) return IY_EINVAL;
            while (k < vlen) {
                int c = pct_next(v, vlen, &k);
                if (c <= 0 || o + 1 >= outsz) return IY_EINVAL;   /* bad escape, NUL, too long */
                out[o++] = (char)c;
            }
            out[o] = '\0';
            return 1;
        }
        i = j + 1;
    }
    return 0;
}

/* ---- responses and paths ------------------------------------------------- */

const char *http_status_text(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void http_response_head(iy_buf *out, int status, const char *content_type,
                        size_t content_length, int keep_alive, const char *extra)
{
    iy_buf_appendf(out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    if (content_type) iy_buf_appendf(out, "Content-Type: %s\r\n", content_type);
    /* Nothing is cached unless the answer says otherwise (extra's own Cache-Control). */
    int own_cache = extra && strstr(extra, "Cache-Control:") != NULL;
    iy_buf_appendf(out,
                   "Content-Length: %zu\r\nConnection: %s\r\n%s"
                   "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n%s\r\n",
                   content_length, keep_alive ? "keep-alive" : "close",
                   own_cache ? "" : "Cache-Control: no-store\r\n", extra ? extra : "");
}

int http_path_split(iy_str path, iy_str *seg, int max)
{
    if (max < 0 || path.len == 0 || path.ptr[0] != '/') return IY_EINVAL;
    int n = 0;
    size_t i = 1;
    while (i < path.len) {
        size_t j = i;
        while (j < path.len && path.ptr[j] != '/') j++;
        if (j == i || n == max) return IY_EINVAL;
        seg[n++] = (iy_str){ path.ptr + i, j - i };
        i = j + 1;
    }
    return n;
}
