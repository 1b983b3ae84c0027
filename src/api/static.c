/* static.c — the web client's files, served from memory (web_assets.h).
 * "/" is "/index.html". Unknown paths get 404. */
#include "api_int.h"
#include "web_assets.h"
#include "../base/err.h"
#include <string.h>

void static_serve(conn *c, iy_str path)
{
    if (iy_str_eq(path, "/")) path = IY_STR("/index.html");
    for (size_t i = 0; i < web_assets_count; i++) {
        const web_asset *a = &web_assets[i];
        if (strlen(a->path) == path.len && memcmp(a->path, path.ptr, path.len) == 0) {
            conn_http_respond(c, 200, a->content_type, (const char *)a->data, a->len);
            return;
        }
    }
    conn_http_error(c, IY_ENOTFOUND, "no such file");
}
