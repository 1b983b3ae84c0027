/* static.c — the web client's files, served from memory.
 *
 * This version serves one page that says the server is up and points at the
 * API; the full web client (issue 5) replaces it with assets embedded at
 * build time, so nothing is read from disk or fetched from another host. */
#include "core_int.h"
#include <string.h>

static const char index_html[] =
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>iyagi</title>\n"
    "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}"
    "code{background:#eee;padding:0 .2em}</style></head>\n"
    "<body><h1>iyagi &#xC774;&#xC57C;&#xAE30;</h1>\n"
    "<p>The chat server is running. The HTTP API is under <code>/v1</code> and the chat "
    "WebSocket at <code>/v1/ws</code>; see <code>PROTOCOL.md</code>. "
    "Health: <a href=\"/healthz\">/healthz</a>, metrics: <a href=\"/metrics\">/metrics</a>.</p>\n"
    "<p>The web client is not part of this build yet.</p>\n</body></html>\n";

void static_index(conn *c)
{
    conn_http_respond(c, 200, "text/html; charset=utf-8", index_html, sizeof index_html - 1);
}
