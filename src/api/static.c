/* static.c — the web client's files, served from memory (web_assets.h).
 * "/" is "/index.html". Unknown paths get 404.
 *
 * Served with a strict Content-Security-Policy: the client has no inline
 * script or style, so nothing but our own files runs even if a message's
 * text ever reached the page as markup; it may not be framed (clickjacking).
 * connect-src allows ws:/wss: anywhere because discovery may send the
 * socket to another node's origin (--public-url of each node).
 *
 * Also the API's reference documents (GET /v1/openapi.json and
 * /v1/asyncapi.json), embedded like the client's files. */
#include "api_int.h"
#include "web_assets.h"
#include "../base/err.h"
#include <string.h>

#define STATIC_HEADERS                                                                           \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "        \
    "img-src 'self' data: blob:; connect-src 'self' ws: wss:; manifest-src 'self'; worker-src 'self'; " \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"                              \
    "X-Frame-Options: DENY\r\n"

static const web_asset *find(const web_asset *table, size_t n, iy_str path)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(table[i].path) == path.len && memcmp(table[i].path, path.ptr, path.len) == 0) return &table[i];
    return NULL;
}

int static_exists(iy_str path)
{
    if (iy_str_eq(path, "/")) path = IY_STR("/index.html");
    return find(web_assets, web_assets_count, path) != NULL;
}

void static_serve(conn *c, iy_str path)
{
    if (iy_str_eq(path, "/")) path = IY_STR("/index.html");
    const web_asset *a = find(web_assets, web_assets_count, path);
    if (a) conn_http_respond_x(c, 200, a->content_type, STATIC_HEADERS, (const char *)a->data, a->len);
    else conn_http_error(c, IY_ENOTFOUND, "no such file");
}

/* The reference documents change only with the binary: a client may keep
 * them an hour. */
void static_api_doc(conn *c, const char *name)
{
    const web_asset *a = find(api_docs, api_docs_count, (iy_str){ name, strlen(name) });
    if (a) conn_http_respond_x(c, 200, a->content_type, "Cache-Control: public, max-age=3600\r\n", (const char *)a->data, a->len);
    else conn_http_error(c, IY_ENOTFOUND, "no such document");
}
