/* static.c — the web client's files, served from memory (web_assets.h).
 * "/" is "/index.html". Unknown paths get 404.
 *
 * Served with a strict Content-Security-Policy: the client has no inline
 * script or style, so nothing but our own files runs even if a message's
 * text ever reached the page as markup; it may not be framed (clickjacking).
 * connect-src allows ws:/wss: anywhere because discovery may send the
 * socket to another node's origin (--public-url of each node). */
#include "api_int.h"
#include "web_assets.h"
#include "../base/err.h"
#include <string.h>

#define STATIC_HEADERS                                                                           \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "        \
    "img-src 'self' data: blob:; connect-src 'self' ws: wss:; manifest-src 'self'; worker-src 'self'; " \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"                              \
    "X-Frame-Options: DENY\r\n"

void static_serve(conn *c, iy_str path)
{
    if (iy_str_eq(path, "/")) path = IY_STR("/index.html");
    for (size_t i = 0; i < web_assets_count; i++) {
        const web_asset *a = &web_assets[i];
        if (strlen(a->path) == path.len && memcmp(a->path, path.ptr, path.len) == 0) {
            conn_http_respond_x(c, 200, a->content_type, STATIC_HEADERS, (const char *)a->data, a->len);
            return;
        }
    }
    conn_http_error(c, IY_ENOTFOUND, "no such file");
}
