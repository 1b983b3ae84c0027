/* routes.c — naming a request's path by its template (routes.h).
 *
 * A template is matched segment by segment: a literal must be equal, a
 * "{...}" segment matches any one segment. The first match wins, so
 * "/v1/sessions/current" comes before "/v1/sessions/{id}". */
#include "routes.h"
#include <string.h>

const char *const api_route_names[] = {
    "other",
    "static",
    "/healthz",
    "/metrics",
    "/v1/ws",
    "/v1/openapi.json",
    "/v1/asyncapi.json",
    "/v1/users",
    "/v1/users/{id}",
    "/v1/users/{id}/messages",
    "/v1/sessions",
    "/v1/sessions/current",
    "/v1/sessions/{id}",
    "/v1/me",
    "/v1/me/password",
    "/v1/channels",
    "/v1/channels/{id}",
    "/v1/channels/{id}/messages",
    "/v1/channels/{id}/mute",
    "/v1/channels/{id}/members",
    "/v1/channels/{id}/members/{id}",
    "/v1/messages/{id}",
    "/v1/messages/{id}/reactions/{emoji}",
    "/v1/groups",
    "/v1/uploads",
    "/v1/attachments/{id}",
    "/v1/attachments/{id}/thumb",
    "/v1/search",
    "/v1/sync",
    "/v1/discovery",
    "/v1/friends",
    "/v1/friends/{id}",
    "/v1/blocks",
    "/v1/blocks/{id}",
    "/v1/presence",
    "/v1/push/vapid",
    "/v1/push/subscriptions",
    "/v1/push/subscriptions/{id}",
};
const unsigned api_route_count = sizeof api_route_names / sizeof api_route_names[0];

#define FIRST_TEMPLATE 2

/* 1 if the n segments of seg match template t. */
static int matches(const char *t, const iy_str *seg, int n)
{
    int i = 0;
    for (const char *p = t + 1; *p; i++) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (i >= n) return 0;
        if (p[0] != '{' && (seg[i].len != len || memcmp(seg[i].ptr, p, len) != 0)) return 0;
        p += len;
        if (*p == '/') p++;
    }
    return i == n;
}

unsigned api_route_of(iy_str path)
{
    iy_str seg[8];
    int n = http_path_split(path, seg, 8);
    if (n < 0) return 0;
    for (unsigned r = FIRST_TEMPLATE; r < api_route_count; r++)
        if (matches(api_route_names[r], seg, n)) return r;
    /* Everything outside /v1 that is not health or metrics is the web client's. */
    if (n == 0 || !(seg[0].len == 2 && memcmp(seg[0].ptr, "v1", 2) == 0)) return 1;
    return 0;
}
