/* auth.c — session tokens and password hashing.
 *
 * Tokens are 32 random bytes (getrandom), sent as base64url and stored only
 * as their SHA-256, so a copy of the data directory does not hold usable
 * tokens. Passwords are hashed with Argon2id (libargon2, RFC 9106's second
 * recommended option: t=2, m=19 MiB, p=1 as OWASP advises). Hashing takes
 * tens of milliseconds, so it runs on libuv's thread pool, never on an I/O
 * thread; the callback comes back on the requesting thread's loop. */
#include "auth.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include <argon2.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/random.h>

#define ARGON2_T 2
#define ARGON2_M_KIB 19456
#define ARGON2_P 1
#define ARGON2_SALT 16
#define ARGON2_HASHLEN 32

static void random_bytes(uint8_t *p, size_t n)
{
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r < 0) continue; /* EINTR; the kernel pool is initialised long before we run */
        p += r;
        n -= (size_t)r;
    }
}

void auth_token_hash(const char *token, size_t n, uint8_t hash[32])
{
    unsigned int len = 32;
    EVP_Digest(token, n, hash, &len, EVP_sha256(), NULL);
}

void auth_token_new(char out[44], uint8_t hash[32])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t raw[33];
    random_bytes(raw, 32);
    raw[32] = 0;
    /* 32 bytes -> 43 base64url characters, no padding. */
    size_t o = 0;
    for (size_t i = 0; i < 33; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | (i + 2 < 33 ? raw[i + 2] : 0);
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    out[43] = '\0';
    auth_token_hash(out, 43, hash);
}

void auth_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[32];
    if (nbytes > sizeof raw) nbytes = sizeof raw;
    random_bytes(raw, nbytes);
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

typedef struct pw_work {
    uv_work_t req;
    char *pw;
    size_t pw_len;
    char encoded[256];
    int result;              /* hash: 0 or IY_EIO; verify: 1 ok, 0 mismatch */
    int verify;
    auth_hash_cb hash_cb;
    auth_verify_cb verify_cb;
    void *ctx;
} pw_work;

static void pw_run(uv_work_t *req)
{
    pw_work *w = req->data;
    if (w->verify) {
        w->result = w->encoded[0] &&
                    argon2id_verify(w->encoded, w->pw, w->pw_len) == ARGON2_OK;
        return;
    }
    uint8_t salt[ARGON2_SALT];
    random_bytes(salt, sizeof salt);
    int rc = argon2id_hash_encoded(ARGON2_T, ARGON2_M_KIB, ARGON2_P, w->pw, w->pw_len, salt,
                                   sizeof salt, ARGON2_HASHLEN, w->encoded, sizeof w->encoded);
    w->result = rc == ARGON2_OK ? 0 : IY_EIO;
}

/* Hashes queued or running: libuv's pool runs 4 at a time; past
 * AUTH_PW_QUEUE_MAX waiting, callers answer `unavailable` at once rather
 * than queue everyone's login behind a flood (auth_pw_busy). */
static _Atomic int pw_pending;

int auth_pw_busy(void) { return pw_pending >= AUTH_PW_QUEUE_MAX; }

static void pw_after(uv_work_t *req, int status)
{
    pw_work *w = req->data;
    pw_pending--;
    if (status != 0) w->result = w->verify ? 0 : IY_EIO;
    if (w->verify == 2) w->result = 0;
    if (w->verify) w->verify_cb(w->ctx, w->result);
    else w->hash_cb(w->ctx, w->result, w->result == 0 ? w->encoded : NULL);
    /* Passwords do not linger in freed memory. */
    memset(w->pw, 0, w->pw_len);
    iy_free(w->pw);
    iy_free(w);
}

static pw_work *pw_new(const char *pw, size_t n, void *ctx)
{
    pw_work *w = iy_calloc(1, sizeof *w);
    w->pw = iy_strndup(pw, n);
    w->pw_len = n;
    w->ctx = ctx;
    w->req.data = w;
    pw_pending++;
    return w;
}

void auth_hash_password(iothread *t, const char *pw, size_t n, auth_hash_cb cb, void *ctx)
{
    pw_work *w = pw_new(pw, n, ctx);
    w->hash_cb = cb;
    uv_queue_work(&t->loop, &w->req, pw_run, pw_after);
}

void auth_verify_password(iothread *t, const char *encoded, const char *pw, size_t n,
                          auth_verify_cb cb, void *ctx)
{
    pw_work *w = pw_new(pw, n, ctx);
    w->verify = 1;
    w->verify_cb = cb;
    /* An unknown user is checked against a fixed dummy hash, so a login
     * takes the same time whether or not the username exists. */
    static const char dummy[] =
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$"
        "hX1bH3Hq0aqFJ4I7Vtqm6t4L6uC3dGHRe0Pw8a5k6yI";
    snprintf(w->encoded, sizeof w->encoded, "%s", encoded && encoded[0] ? encoded : dummy);
    if (!encoded || !encoded[0]) w->verify = 2; /* always fails after the work */
    uv_queue_work(&t->loop, &w->req, pw_run, pw_after);
}
