/* routes.h — the route templates of the HTTP API, for metrics and the
 * access log: a request's path as its template ("/v1/channels/{id}/messages"),
 * never with its ids or its query string (no unbounded label values, no
 * tokens). The router (api.c) does the dispatching; this only names. */
#ifndef IY_ROUTES_H
#define IY_ROUTES_H
#include "../codec/http.h"

/* The route number of path (0: "other", an unknown path; "static" for the
 * web client's files). Never fails. */
unsigned api_route_of(iy_str path);

/* Every template, by number (metrics_http_routes). */
extern const char *const api_route_names[];
extern const unsigned api_route_count;

#endif
