/* http.h — the sans-I/O HTTP/1.1 request codec, built on llhttp.
 *
 * One http_parser per connection. It never sees a socket: the connection
 * reads bytes, feeds them, and gets back either "need more" or one whole
 * request, parsed into an http_request whose strings point into the parser's
 * own storage. The connection then answers (http_response_head + body) and
 * calls http_parser_next() before feeding the bytes it has not consumed yet:
 *
 *     for (;;) {
 *         rc = http_parser_feed(p, in, n, &used, &req);
 *         if (rc < 0)  -> answer http_parser_error_status(p), close
 *         in += used; n -= used;
 *         if (!req)    -> wait for more bytes (all were consumed)
 *         if (req->websocket && accepted) -> the remaining n bytes are
 *                         WebSocket bytes; stop using the parser
 *         answer req; http_parser_next(p);
 *         if (!req->keep_alive) -> close after the answer
 *     }
 *
 * Exactly one request is returned per feed: pipelined requests stay in the
 * caller's input until the previous one is answered, which keeps answers in
 * order. Limits: the request line plus headers may take max_head bytes
 * (else 431), the body max_body bytes (else 413, checked against
 * Content-Length before any body byte is read), and the chunked framing
 * around a body (chunk-size lines, extensions, trailers) max_head + max_body
 * bytes (else 413). Requests with both Transfer-Encoding and Content-Length,
 * and any other framing llhttp finds ambiguous, are rejected (400): llhttp
 * runs strict, without lenient flags.
 *
 * Memory: an idle parser is a few hundred bytes plus its storage buffer,
 * which is released on http_parser_next() when it grew past 16 KiB. */
#ifndef IY_CODEC_HTTP_H
#define IY_CODEC_HTTP_H
#include <stddef.h>
#include <stdint.h>
#include <llhttp.h>     /* the HTTP_GET, HTTP_POST, ... method values */
#include "../base/buf.h"

/* A parsed request. Every iy_str points into the parser's storage (never
 * NULL: absent values are { "", 0 }) and stays valid until
 * http_parser_next() or http_parser_free(). */
typedef struct http_request {
    int method;                 /* llhttp_method_t: HTTP_GET, HTTP_POST, HTTP_PUT, HTTP_PATCH, HTTP_DELETE, ... */
    iy_str path;                /* raw path without the query, e.g. "/v1/users/7" (absolute-form URLs reduced to their path) */
    iy_str query;               /* raw query without '?', len 0 if none */
    iy_str authorization, content_type, host, upgrade, connection, ws_key, ws_version, origin,
        forwarded_for, expect, forwarded_proto, ac_request_method; /* header values (last one wins, trailing blanks trimmed), len 0 if absent */
    const char *body;           /* body bytes (chunked bodies de-chunked); never NULL */
    size_t body_len;
    int keep_alive;             /* llhttp_should_keep_alive(): 0 means close after answering */
    int websocket;              /* GET with Upgrade: websocket and Connection containing "upgrade" (case-insensitive token match) */
    int streamed;               /* the body was streamed (http_parser_stream_body): body is empty */
} http_request;

typedef struct http_parser http_parser;

/* A parser for one connection: the request line plus headers may take
 * max_head bytes, a body max_body bytes. Aborts on out-of-memory. */
http_parser *http_parser_new(size_t max_head, size_t max_body);

/* Frees the parser and its storage; accepts NULL. */
void http_parser_free(http_parser *p);

/* Bytes p holds (itself and its buffers): what freeing it gives back. */
size_t http_parser_mem(const http_parser *p);

/* Feeds len bytes of data. Returns 0 and sets *consumed to the number of
 * bytes used. When a whole request has been parsed, *req points to it and
 * parsing stopped right after it: pipelined bytes and, for an upgrade, the
 * WebSocket bytes that follow the head are NOT consumed. *req stays valid
 * until http_parser_next(); feeding again before that returns the same
 * request and consumes nothing. *req == NULL means more bytes are needed
 * (all len bytes were consumed).
 * Errors (the parser is then dead, and every later feed fails the same way):
 *   IY_EPROTO   malformed or ambiguous request (answer 400)
 *   IY_ETOOBIG  head over max_head (answer 431) or body over max_body
 *               (answer 413); http_parser_error_status() tells which. */
int http_parser_feed(http_parser *p, const char *data, size_t len, size_t *consumed,
                     const http_request **req);

/* ---- streamed bodies (uploads) --------------------------------------------
 * With head_stop on, a feed that completes the head of a request that has
 * a body (Content-Length > 0 or chunked) stops there: *req is NULL and
 * http_parser_head() returns the request's method, URL and headers (body
 * empty; valid until the next feed). The caller then either feeds on as
 * usual (the body is held, up to max_body: a larger Content-Length fails
 * with 413 at that next feed) or calls http_parser_stream_body(): the body
 * is not held; each later feed leaves the body bytes it parsed in
 * http_parser_body_chunk() (valid until the next feed; may come with the
 * completed request in the same feed: take the chunk first), and the
 * finished request has streamed = 1 and an empty body. */
void http_parser_set_head_stop(http_parser *p, int on);
const http_request *http_parser_head(const http_parser *p);

/* Takes the body of the request whose head was just returned as a stream
 * of at most max bytes (more: 413, IY_ETOOBIG; a Content-Length over max
 * fails at once and the parser is dead). 0, IY_ETOOBIG, or IY_EINVAL when
 * no head is waiting. */
int http_parser_stream_body(http_parser *p, uint64_t max);

/* The streamed body bytes of the last feed: a pointer and *len (NULL, 0
 * when none). */
const char *http_parser_body_chunk(const http_parser *p, size_t *len);

/* The status to answer after a feed failed: 400, 413 or 431; 0 if the
 * parser has not failed. */
int http_parser_error_status(const http_parser *p);

/* Bytes of the current request the parser holds (URL, kept headers, body). */
size_t http_parser_buffered(const http_parser *p);

/* While a body is being received: its declared length (Content-Length, or
 * max_body for a chunked body); else 0. */
size_t http_parser_declared(const http_parser *p);

/* Forgets the returned request (its strings become invalid) and readies the
 * parser for the next request of a keep-alive connection. If the request
 * was an upgrade the caller declined, parsing simply goes on as HTTP. A
 * no-op when no request is pending or the parser is dead. */
void http_parser_next(http_parser *p);

/* Looks up the query parameter name (compared after %-decoding) in a raw
 * query string ("a=1&b=x%20y"); the first occurrence wins. Returns 1 and
 * the %-decoded ('+' = space) value NUL-terminated in out (a parameter
 * without '=' has the value ""); 0 if absent; IY_EINVAL if the value is
 * malformed (bad %-escape, or %00) or does not fit outsz bytes with its NUL. */
int http_query_get(iy_str query, const char *name, char *out, size_t outsz);

/* %-decodes one path segment ('+' stays '+') NUL-terminated into out:
 * its length, or IY_EINVAL for a bad escape, %00, or no room. */
int http_path_decode(iy_str seg, char *out, size_t outsz);

/* Appends to out a status line and the headers Content-Type (omitted if
 * content_type is NULL), Content-Length, Connection: keep-alive|close,
 * Cache-Control: no-store, X-Content-Type-Options: nosniff,
 * Referrer-Policy: no-referrer, then `extra` (whole header lines, each
 * ending in CRLF; NULL for none), then the blank line. The body is the
 * caller's. */
void http_response_head(iy_buf *out, int status, const char *content_type,
                        size_t content_length, int keep_alive, const char *extra);

/* The reason phrase of status: "OK", "Created", "No Content", "Bad Request",
 * ..., "Service Unavailable"; "Unknown" for a status it does not know.
 * Never NULL; a static string. */
const char *http_status_text(int status);

/* Splits a path on '/' into raw (not %-decoded) segments pointing into
 * path: "/v1/users/7" -> {"v1","users","7"}; "/" -> none; one trailing '/'
 * is ignored. Returns the count (<= max) or IY_EINVAL if the path does not
 * start with '/', has an empty segment inside ("/a//b"), or has more than
 * max segments. */
int http_path_split(iy_str path, iy_str *seg, int max);

#endif
