/* limiter.h — rate limits keyed by user or client address, for any thread.
 *
 * A limiter is one limit (a token-bucket rate or a back-off, model/
 * ratelimit.h) over many keys. Keys are spread over shards, each a mutex
 * and a map, so that I/O threads checking different keys rarely meet.
 * Memory is bounded: a key whose bucket is full again (or whose back-off has
 * expired) is state nobody needs and goes at the next sweep; at max_keys,
 * a shard first sweeps, and if that frees nothing it forgets its keys
 * (fails open: a flood of fresh addresses costs the limiter its memory of
 * them, never everyone their service).
 *
 * The limits of a node are its own: in a cluster each node counts what it
 * serves (a user's sends through two nodes get twice the rate). */
#ifndef IY_CHAT_LIMITER_H
#define IY_CHAT_LIMITER_H
#include <stddef.h>
#include <stdint.h>
#include "../model/ratelimit.h"

typedef struct limiter limiter;

/* A token-bucket limiter (rate) or, with backoff.base_ms > 0, a back-off
 * limiter. max_keys bounds its memory (about 100 bytes a key). */
limiter *limiter_new_rate(iy_rate rate, size_t max_keys);
limiter *limiter_new_backoff(iy_backoff backoff, size_t max_keys);
void limiter_free(limiter *l);

/* Rate: takes a token of key; 0 if allowed, else the ms until it will be. */
int64_t limiter_take(limiter *l, uint64_t key, int64_t now_ms);

/* Back-off: ms that key is still locked (0: go ahead); a failure; a success
 * (forgets the key). */
int64_t limiter_wait(limiter *l, uint64_t key, int64_t now_ms);
void limiter_fail(limiter *l, uint64_t key, int64_t now_ms);
void limiter_clear(limiter *l, uint64_t key);

/* Forgets the keys that need no memory any more. */
void limiter_sweep(limiter *l, int64_t now_ms);

/* Keys held now (metrics, tests). */
size_t limiter_keys(limiter *l);

/* A key for a string (a username): FNV-1a, never 0. */
uint64_t limiter_key_str(const char *s);

/* ---- the service's limits (on by default; --rate-limits off: none) ---- */

/* Defaults, chosen for people, not programs: a person logs in a few times
 * a day, signs up once, types a message a second at most, starts a few
 * chats a day. Bursts leave room for reconnect storms and pasted lines. */
#define LIMIT_LOGIN_ADDR ((iy_rate){ 0.5, 30 })      /* logins per address: 30/min, burst 30 */
#define LIMIT_SIGNUP_ADDR ((iy_rate){ 1.0 / 60, 10 }) /* signups per address: 1/min, burst 10 */
#define LIMIT_SEND_USER ((iy_rate){ 20, 200 })       /* messages per user: 20/s, burst 200 */
#define LIMIT_DIRECT_USER ((iy_rate){ 1.0 / 30, 30 }) /* new direct chats per user: 2/min, burst 30 */
#define LIMIT_TYPING_USER ((iy_rate){ 4, 10 })       /* typing notices per user (all devices) */
#define LIMIT_PRESENCE_USER ((iy_rate){ 2, 20 })     /* presence queries per user */
/* Failed logins per account: 5 free, then 1 s, 2 s, 4 s ... at most 5 min. */
#define LIMIT_LOGIN_FAILS ((iy_backoff){ 5, 1000, 300000 })
#define LIMIT_KEYS 1000000                           /* keys per limiter (memory bound) */

typedef struct service_limits {
    limiter *login_addr;        /* login attempts per client address */
    limiter *login_user;        /* failed logins per account (back-off) */
    limiter *signup_addr;       /* signups per client address */
    limiter *send_user;         /* messages per user */
    limiter *direct_user;       /* new direct channels per user */
    limiter *typing_user;       /* typing notices per user (extras are dropped) */
    limiter *presence_user;     /* presence queries per user */
} service_limits;

service_limits *service_limits_new(void);
void service_limits_free(service_limits *l);
void service_limits_sweep(service_limits *l, int64_t now_ms);

#endif
