/* tokens.h — the valid-token cache (tokens.c): session token hash ->
 * (user, device), so that checking a token on the hot path (the WebSocket
 * `auth`, an HTTP `Authorization: Bearer`) needs no storage round trip.
 *
 * Only tokens the store said are valid go in (at login, or after a store
 * lookup that found the session): an unknown token is never cached, so
 * guessing tokens cannot fill memory. The cache is bounded (entries past
 * `capacity` evict the least recently used of a small sample) and every
 * entry expires `ttl_ms` after it was filled, a bound on how long a
 * revocation that never arrived (a bus message lost) could go unseen.
 *
 * Revocation. tokens_forget() removes a token at once; it is called right
 * after the store deleted the session (logout, session revocation, password
 * change, account deletion), before the call is answered, and, on the other
 * nodes, when the revocation arrives over the bus — a moment later, so in a
 * cluster a cached token is never enough alone: HTTP and the WebSocket
 * auth's second read ask the store there (chat/chat.c), and the cache only
 * spares the WebSocket auth its first round trip. A lookup that read the store before the delete must
 * not put the token back afterwards: tokens_epoch() is read before the store
 * lookup and tokens_put() only inserts if no forget or clear touched the
 * token's stripe in between. While the cluster bus is cut off (revocations
 * from other nodes may be lost), tokens_pause() clears the cache and keeps
 * it empty until tokens_resume().
 *
 * Threads: every function may be called from any thread; the table is
 * split into stripes with a mutex each (reads take one uncontended lock). */
#ifndef IY_CHAT_TOKENS_H
#define IY_CHAT_TOKENS_H
#include <stddef.h>
#include <stdint.h>
#include "../base/limits.h"

typedef struct tokens tokens;

#define TOKENS_TTL_MS 60000            /* an entry lives this long at most */

/* A cache of at most capacity tokens (0: a cache that never holds any).
 * Never fails (aborts on out of memory). */
tokens *tokens_new(size_t capacity, int64_t ttl_ms);
void tokens_free(tokens *t);           /* accepts NULL */

/* 1 and the session's user and device (NUL-terminated) if hash is cached
 * and not expired; 0 otherwise (ask the store). t may be NULL (0). */
int tokens_get(tokens *t, const uint8_t hash[32], uint64_t *user, char device[IY_DEVICE_MAX + 1]);

/* The revocation epoch of hash's stripe: read it before looking the
 * session up in the store, and pass it to tokens_put. */
uint64_t tokens_epoch(tokens *t, const uint8_t hash[32]);

/* Caches a session the store just returned, unless the token's stripe saw
 * a forget or clear since epoch (the lookup may predate a revocation) or
 * the cache is paused. For a session just created (login), pass
 * tokens_epoch() read after the create. */
void tokens_put(tokens *t, const uint8_t hash[32], uint64_t user, const char *device, uint64_t epoch);

/* The session of hash is gone: forget it now. */
void tokens_forget(tokens *t, const uint8_t hash[32]);

/* Forget everything and cache nothing until tokens_resume (the cluster bus
 * is disconnected: revocations from other nodes may be missed). */
void tokens_pause(tokens *t);
void tokens_resume(tokens *t);

/* Counters for tests and /metrics: lookups that hit, missed; entries. */
typedef struct tokens_stats {
    uint64_t hits, misses, entries;
} tokens_stats;
void tokens_get_stats(tokens *t, tokens_stats *out);

/* Tests only: the cache's clock (CLOCK_MONOTONIC ms) shifted by offset_ms,
 * and its current reading, to drive its 32-bit times across their wrap.
 * Not thread-safe: set it before other threads use t. */
void tokens_clock_offset(tokens *t, int64_t offset_ms);
int64_t tokens_clock_ms(tokens *t);

#endif
