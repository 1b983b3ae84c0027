/* web_assets.h — the web client's files, embedded at build time.
 *
 * tools/embed.c turns every file under web/ into one entry of web_assets[]
 * (build/<variant>/gen/web_assets.c); static.c serves them. Nothing is read
 * from disk at run time. */
#ifndef IY_WEB_ASSETS_H
#define IY_WEB_ASSETS_H
#include <stddef.h>

typedef struct web_asset {
    const char *path;           /* URL path, e.g. "/index.html" (web/index.html) */
    const char *content_type;   /* from the file's extension */
    const unsigned char *data;
    size_t len;
} web_asset;

extern const web_asset web_assets[];
extern const size_t web_assets_count;

#endif
