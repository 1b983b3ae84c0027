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

/* The API's reference documents, docs/openapi.json and docs/asyncapi.json
 * (paths "/openapi.json", "/asyncapi.json"), embedded the same way
 * (build/<variant>/gen/api_docs.c) and served under /v1/. */
extern const web_asset api_docs[];
extern const size_t api_docs_count;

#endif
