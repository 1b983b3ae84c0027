/* webpush.h — the cryptography of push delivery, on OpenSSL 3.
 *
 *  - VAPID (RFC 8292): an ES256 (P-256) key pair created on first start in
 *    the data directory and reused after; a signed JWT per push service
 *    origin for the Authorization header.
 *  - Message encryption (RFC 8291, "aes128gcm" content coding of RFC 8188):
 *    ECDH with the browser's p256dh key, HKDF with its auth secret,
 *    AES-128-GCM, one record.
 *  - Webhook signatures: HMAC-SHA256 of the body.
 * Pure functions of their inputs (plus randomness): no I/O except
 * vapid_load_or_create. Every function returns 0 or a negative IY_E* code. */
#ifndef IY_WEBPUSH_H
#define IY_WEBPUSH_H
#include <stddef.h>
#include <stdint.h>
#include "../base/buf.h"

typedef struct vapid vapid;

/* Loads the key pair from path (PEM), or creates it there (mode 0600) if the
 * file does not exist. Returns 0, IY_EIO (unreadable/corrupt file, logged).
 * The file is an unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY") of a P-256
 * key; any other key type or curve is IY_EIO, never silently replaced. A new
 * key is written and fsynced under "<path>.tmp.<pid>" and then link()ed to
 * path, so a crash leaves no half-written key and concurrent starters end up
 * sharing one key. *out is set only on success; the caller frees it. The
 * vapid is immutable once loaded: the functions below may use it from
 * several threads at once. */
int vapid_load_or_create(const char *path, vapid **out);
void vapid_free(vapid *v);                                 /* accepts NULL */

/* A new P-256 key pair as unencrypted PKCS#8 PEM, appended to pem (the
 * store keeps it: every node of a cluster signs with the same key).
 * 0 or IY_EIO. */
int vapid_new_pem(iy_buf *pem);

/* The key pair from PEM bytes (as vapid_load_or_create checks a file).
 * 0 and *out, IY_EIO (logged). */
int vapid_from_pem(const char *pem, size_t len, vapid **out);

/* The bytes of the key file at path, appended to pem: 0, IY_ENOTFOUND,
 * IY_EIO (logged). For moving an old data directory's vapid.pem into the store. */
int vapid_read_file(const char *path, iy_buf *pem);

/* The public key as browsers want it for applicationServerKey: the
 * uncompressed point (65 bytes), base64url without padding (87 chars).
 * Owned by v, valid until vapid_free(v). */
const char *vapid_public_key(const vapid *v);

/* Appends the value of the Authorization header for a push to an endpoint
 * whose origin is `audience` ("https://push.example.net", no path):
 * "vapid t=<JWT>, k=<public key>", the JWT (ES256, JOSE r||s signature)
 * with claims {"aud":audience,"exp":now_s+12h,"sub":subject}.
 * Returns 0, IY_EINVAL, IY_EIO.
 * IY_EINVAL: v NULL, now_s negative, or audience not "http(s)://host[:port]"
 * (no path, no trailing '/', no spaces, quotes or control characters).
 * subject ("mailto:..." or an https URL, RFC 8292 §2.1) is JSON-escaped;
 * NULL or "" leaves the optional "sub" claim out. ECDSA is randomized: two
 * calls give different tokens. Nothing is appended on failure. */
int vapid_authorization(const vapid *v, const char *audience, const char *subject, int64_t now_s,
                        iy_buf *out);

/* Encrypts plain[0..n) for a subscription (p256dh and auth as the browser
 * gives them, base64url with or without padding), appending the whole
 * aes128gcm body (salt, record size 4096, keyid = our ephemeral public key,
 * one record with the 0x02 padding delimiter) to out.
 * Returns 0, IY_EINVAL (bad keys, n > 3993), IY_EIO.
 * Appends exactly 86 + n + 17 bytes (header, record, 16-byte tag): n <= 3993
 * keeps the body within the 4096 bytes every push service accepts. "Bad
 * keys": p256dh not a 65-byte uncompressed point on P-256 (compressed
 * points are refused), auth not exactly 16 bytes, or either NULL. A fresh
 * key pair and salt per call. Nothing is appended on failure. */
int webpush_encrypt(const char *p256dh, const char *auth, const uint8_t *plain, size_t n, iy_buf *out);

/* The same with the sender's ephemeral private key (32 bytes) and salt
 * fixed — for the RFC 8291 Appendix A test vector only. The public key is
 * computed from sender_priv; IY_EINVAL also if sender_priv (big-endian) is
 * 0 or not below the order of P-256. */
int webpush_encrypt_fixed(const uint8_t sender_priv[32], const uint8_t salt[16], const char *p256dh,
                          const char *auth, const uint8_t *plain, size_t n, iy_buf *out);

/* "sha256=" + lowercase hex HMAC-SHA256(secret, body): out has room for 72.
 * secret is a NUL-terminated string (its strlen bytes are the key); body
 * may be NULL when n is 0. out is NUL-terminated (71 characters); should
 * OpenSSL ever fail, out is "" and the failure is logged. */
void webhook_signature(const char *secret, const void *body, size_t n, char out[72]);

/* base64url without padding. encode appends to out; decode accepts either
 * alphabet and optional padding: 0 and *n, or IY_EINVAL (bad input or
 * more than cap bytes).
 * Decode details: the alphabets may even be mixed ('+' = '-', '/' = '_');
 * padding is optional but, if present, must bring the length to a multiple
 * of 4; a length of 4k+1 characters, any other character (including
 * whitespace), or non-zero unused bits in the last character are bad input.
 * *n is set only on success; out may hold garbage after a failure. */
void b64url_encode(iy_buf *out, const uint8_t *p, size_t n);
int b64url_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n);

#endif
