/* auth.h — session tokens and password hashing (auth.c). */
#ifndef IY_CHAT_AUTH_H
#define IY_CHAT_AUTH_H
#include <stddef.h>
#include <stdint.h>
#include "../net/net.h"

/* A random token (base64url, NUL-terminated) and its SHA-256. */
void auth_token_new(char out[44], uint8_t hash[32]);
void auth_token_hash(const char *token, size_t n, uint8_t hash[32]);
void auth_random_hex(char *out, size_t nbytes);     /* 2*nbytes hex chars + NUL */

/* Argon2id on libuv's thread pool; the callback runs on t's loop. */
typedef void (*auth_hash_cb)(void *ctx, int err, const char *encoded);
typedef void (*auth_verify_cb)(void *ctx, int ok);
void auth_hash_password(iothread *t, const char *pw, size_t n, auth_hash_cb cb, void *ctx);

/* 1 if AUTH_PW_QUEUE_MAX hashes are queued or running already: a caller
 * with rate limits on answers `unavailable` instead of queueing more. */
#define AUTH_PW_QUEUE_MAX 32
int auth_pw_busy(void);
void auth_verify_password(iothread *t, const char *encoded, const char *pw, size_t n,
                          auth_verify_cb cb, void *ctx);

#endif
