/* api.h — the HTTP API of the contract (shared/PROTOCOL.md, "HTTP API"), as
 * the rest of the service sees it. The files of src/api share api_int.h. */
#ifndef IY_API_H
#define IY_API_H
#include "../net/net.h"

/* A complete HTTP request on c (the transport's handler). */
void api_handle(conn *c, const http_request *req);

/* The head of a request with a body (the transport's http_head): an upload
 * takes its body as a stream (api/uploads.c); every other body is held. */
void api_head(conn *c, const http_request *head);

/* A message reached c's user while c long-polls (api/sync.c). */
void api_wait_wake(conn *c);

/* c's long poll is past its deadline: answer the empty batch. */
void api_wait_expire(conn *c);

/* The bus confirmed the subscription c's long poll waited for. */
void api_wait_subscribed(conn *c);

#endif
