/* webpush.c — VAPID, RFC 8291 message encryption and webhook signatures on
 * OpenSSL 3 (see webpush.h).
 *
 * Everything goes through the EVP layer: keys are EVP_PKEYs built with
 * EVP_PKEY_fromdata (group "prime256v1"), ECDH is EVP_PKEY_derive, HKDF is
 * the "HKDF" EVP_KDF, the record is EVP aes-128-gcm, ES256 is
 * EVP_DigestSign. The only non-EVP calls are EC_POINT_mul (to compute the
 * public point of a fixed private key, which EVP_PKEY_fromdata does not do in
 * 3.0) and ECDSA_SIG (to turn DER signatures into JOSE r||s); neither is
 * deprecated in OpenSSL 3.
 *
 * The aes128gcm body written by webpush_encrypt (RFC 8188 §2, RFC 8291 §4):
 *
 *   +-----------+--------+-------+---------------------+-------------------+
 *   | salt (16) | rs (4) | idlen | keyid = as_public   | record: AES-GCM(  |
 *   |  random   |  4096  |  65   | (65, uncompressed)  | plain||0x02) ||tag|
 *   +-----------+--------+-------+---------------------+-------------------+
 *
 * Key schedule (RFC 8291 §3.3-3.4, RFC 8188 §2.2-2.3), with
 * HKDF(salt, ikm, info, L) = HKDF-Expand(HKDF-Extract(salt, ikm), info, L):
 *   ecdh  = ECDH(as_private, ua_public)
 *   IKM   = HKDF(auth, ecdh, "WebPush: info\0" || ua_public || as_public, 32)
 *   CEK   = HKDF(salt, IKM, "Content-Encoding: aes128gcm\0", 16)
 *   NONCE = HKDF(salt, IKM, "Content-Encoding: nonce\0", 12)
 * One record only, so the nonce is NONCE xor 0 = NONCE. */
#include "webpush.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include "../codec/jsonw.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#define WP_PUB_LEN 65          /* uncompressed P-256 point: 0x04 || X || Y */
#define WP_PRIV_LEN 32
#define WP_AUTH_LEN 16
#define WP_SALT_LEN 16
#define WP_TAG_LEN 16
#define WP_RS 4096u
#define WP_HEADER_LEN (WP_SALT_LEN + 4 + 1 + WP_PUB_LEN) /* 86 */
/* The whole body must fit the 4096 bytes every push service accepts
 * (RFC 8030 §7.2): 4096 - 86 header - 16 tag - 1 delimiter. */
#define WP_MAX_PLAIN (4096u - WP_HEADER_LEN - WP_TAG_LEN - 1u)
#define WP_JWT_TTL_S (12 * 3600)

struct vapid {
    EVP_PKEY *pkey;
    char pub_b64[88];          /* 87 chars + NUL */
};

/* Drains OpenSSL's error queue into one log line (and empties it, so a
 * stale error never gets blamed on a later call). */
static void log_ssl(const char *what)
{
    unsigned long e = ERR_get_error();
    char msg[256] = "no OpenSSL error";
    if (e) ERR_error_string_n(e, msg, sizeof msg);
    ERR_clear_error();
    iy_log_error("push: %s failed: %s", what, msg);
}

/* ---- base64url -------------------------------------------------------- */

static const char b64_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void b64url_encode(iy_buf *out, const uint8_t *p, size_t n)
{
    iy_buf_reserve(out, (n + 2) / 3 * 4);
    char *o = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
    }
    out->len = (size_t)(o - out->data);
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-' || c == '+') return 62;
    if (c == '_' || c == '/') return 63;
    return -1;
}

int b64url_decode(const char *s, size_t len, uint8_t *out, size_t cap, size_t *n)
{
    /* Padding, if any, must make the length a multiple of 4 (1 or 2 '='). */
    size_t pad = 0;
    while (pad < len && s[len - 1 - pad] == '=') pad++;
    if (pad > 2 || (pad && len % 4 != 0)) return IY_EINVAL;
    len -= pad;
    if (len % 4 == 1) return IY_EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap) return IY_EINVAL;

    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) return IY_EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The leftover bits of the last character must be zero (canonical). */
    if (acc != 0) return IY_EINVAL;
    *n = o;
    return 0;
}

/* Decodes s into exactly want bytes; IY_EINVAL otherwise. */
static int b64_exact(const char *s, uint8_t *out, size_t want)
{
    size_t n;
    if (!s || b64url_decode(s, strlen(s), out, want, &n) != 0 || n != want) return IY_EINVAL;
    return 0;
}

/* ---- keys --------------------------------------------------------------- */

/* A P-256 EVP_PKEY from an uncompressed point (and the private scalar if
 * priv is not NULL). OpenSSL rejects points not on the curve while
 * decoding; the explicit check below also covers the point at infinity.
 * Returns the key or NULL. */
static EVP_PKEY *p256_from_raw(const uint8_t pub[WP_PUB_LEN], const uint8_t *priv)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *d = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *chk = NULL;
    EVP_PKEY *pkey = NULL;

    if (!bld) goto err;
    if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0)) goto err;
    if (!OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, WP_PUB_LEN)) goto err;
    if (priv) {
        if (!(d = BN_secure_new()) || !BN_bin2bn(priv, WP_PRIV_LEN, d)) goto err;
        if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d)) goto err;
    }
    if (!(params = OSSL_PARAM_BLD_to_param(bld))) goto err;
    if (!(ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL))) goto err;
    if (EVP_PKEY_fromdata_init(ctx) <= 0) goto err;
    if (EVP_PKEY_fromdata(ctx, &pkey, priv ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) <= 0) goto err;
    if (!(chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL))) goto err;
    if (EVP_PKEY_public_check(chk) <= 0) goto err;
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    BN_clear_free(d);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
err:
    ERR_clear_error();     /* a bad key from a browser is not worth a log line */
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(chk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    BN_clear_free(d);
    OSSL_PARAM_BLD_free(bld);
    return NULL;
}

/* The uncompressed public point of pkey. 0 or IY_EIO. */
static int p256_pub(EVP_PKEY *pkey, uint8_t pub[WP_PUB_LEN])
{
    size_t len = 0;
    /* Keys read from a file may carry the compressed form as their
     * preference; the point itself is the same. */
    if (!EVP_PKEY_set_utf8_string_param(pkey, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                        OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED)
        || !EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_PUB_KEY, pub, WP_PUB_LEN, &len)
        || len != WP_PUB_LEN || pub[0] != 0x04) {
        log_ssl("reading the public key");
        return IY_EIO;
    }
    return 0;
}

/* pub = priv * G for a fixed private scalar. IY_EINVAL unless
 * 0 < priv < order. */
static int p256_pub_of_priv(const uint8_t priv[WP_PRIV_LEN], uint8_t pub[WP_PUB_LEN])
{
    int rc = IY_EIO;
    BN_CTX *bnctx = BN_CTX_new();
    EC_GROUP *g = EC_GROUP_new_by_curve_name_ex(NULL, NULL, NID_X9_62_prime256v1);
    BIGNUM *d = BN_secure_new();
    EC_POINT *p = g ? EC_POINT_new(g) : NULL;
    if (!bnctx || !g || !d || !p || !BN_bin2bn(priv, WP_PRIV_LEN, d)) goto out;
    if (BN_is_zero(d) || BN_cmp(d, EC_GROUP_get0_order(g)) >= 0) {
        rc = IY_EINVAL;
        goto out;
    }
    if (!EC_POINT_mul(g, p, d, NULL, NULL, bnctx)) goto out;
    if (EC_POINT_point2oct(g, p, POINT_CONVERSION_UNCOMPRESSED, pub, WP_PUB_LEN, bnctx) != WP_PUB_LEN)
        goto out;
    rc = 0;
out:
    if (rc == IY_EIO) log_ssl("computing a public key");
    EC_POINT_free(p);
    BN_clear_free(d);
    EC_GROUP_free(g);
    BN_CTX_free(bnctx);
    return rc;
}

/* ---- RFC 8291 ----------------------------------------------------------- */

/* okm = HKDF-SHA-256(salt, ikm, info, len). 1 or 0. */
static int hkdf(const uint8_t *salt, size_t salt_len, const uint8_t *ikm, size_t ikm_len,
                const uint8_t *info, size_t info_len, uint8_t *okm, size_t len)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)ikm, ikm_len);
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
    params[4] = OSSL_PARAM_construct_end();
    int ok = kctx && EVP_KDF_derive(kctx, okm, len, params) > 0;
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return ok;
}

/* ECDH(mine, peer) into secret[32]. 1 or 0. */
static int ecdh(EVP_PKEY *mine, EVP_PKEY *peer, uint8_t secret[32])
{
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL);
    size_t len = 32;
    int ok = ctx && EVP_PKEY_derive_init(ctx) > 0 && EVP_PKEY_derive_set_peer(ctx, peer) > 0
             && EVP_PKEY_derive(ctx, secret, &len) > 0 && len == 32;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

/* The common core: as_key/as_pub is the sender's (ephemeral) key pair. */
static int encrypt_with(EVP_PKEY *as_key, const uint8_t as_pub[WP_PUB_LEN], const uint8_t salt[WP_SALT_LEN],
                        const char *p256dh, const char *auth, const uint8_t *plain, size_t n, iy_buf *out)
{
    static const char info_prefix[] = "WebPush: info";       /* sizeof includes the 0x00 */
    static const char cek_info[] = "Content-Encoding: aes128gcm";
    static const char nonce_info[] = "Content-Encoding: nonce";
    uint8_t ua_pub[WP_PUB_LEN], auth_secret[WP_AUTH_LEN];
    uint8_t secret[32], ikm[32], cek[16], nonce[12];
    uint8_t key_info[sizeof info_prefix + 2 * WP_PUB_LEN];
    EVP_PKEY *ua_key = NULL;
    EVP_CIPHER_CTX *cctx = NULL;
    size_t start = out->len;
    int rc = IY_EINVAL;

    if (n > WP_MAX_PLAIN || (n && !plain)) goto out;
    if (b64_exact(p256dh, ua_pub, WP_PUB_LEN) || ua_pub[0] != 0x04) goto out;
    if (b64_exact(auth, auth_secret, WP_AUTH_LEN)) goto out;
    if (!(ua_key = p256_from_raw(ua_pub, NULL))) goto out;

    rc = IY_EIO;
    memcpy(key_info, info_prefix, sizeof info_prefix);
    memcpy(key_info + sizeof info_prefix, ua_pub, WP_PUB_LEN);
    memcpy(key_info + sizeof info_prefix + WP_PUB_LEN, as_pub, WP_PUB_LEN);
    if (!ecdh(as_key, ua_key, secret)) goto ssl_err;
    if (!hkdf(auth_secret, sizeof auth_secret, secret, sizeof secret, key_info, sizeof key_info, ikm, sizeof ikm)
        || !hkdf(salt, WP_SALT_LEN, ikm, sizeof ikm, (const uint8_t *)cek_info, sizeof cek_info, cek, sizeof cek)
        || !hkdf(salt, WP_SALT_LEN, ikm, sizeof ikm, (const uint8_t *)nonce_info, sizeof nonce_info, nonce,
                 sizeof nonce))
        goto ssl_err;

    /* Header: salt, rs (big-endian), idlen, keyid. */
    iy_buf_reserve(out, WP_HEADER_LEN + n + 1 + WP_TAG_LEN);
    uint8_t *o = (uint8_t *)out->data + out->len;
    memcpy(o, salt, WP_SALT_LEN);
    o[16] = (uint8_t)(WP_RS >> 24);
    o[17] = (uint8_t)(WP_RS >> 16);
    o[18] = (uint8_t)(WP_RS >> 8);
    o[19] = (uint8_t)WP_RS;
    o[20] = WP_PUB_LEN;
    memcpy(o + 21, as_pub, WP_PUB_LEN);
    o += WP_HEADER_LEN;

    /* The single (hence last) record: plaintext, then the 0x02 delimiter. */
    static const uint8_t delim = 0x02;
    int l1 = 0, l2 = 0, l3 = 0;
    if (!(cctx = EVP_CIPHER_CTX_new())) goto ssl_err;
    if (!EVP_EncryptInit_ex2(cctx, EVP_aes_128_gcm(), cek, nonce, NULL)) goto ssl_err;
    if (n && !EVP_EncryptUpdate(cctx, o, &l1, plain, (int)n)) goto ssl_err;
    if (!EVP_EncryptUpdate(cctx, o + l1, &l2, &delim, 1)) goto ssl_err;
    if (!EVP_EncryptFinal_ex(cctx, o + l1 + l2, &l3)) goto ssl_err;
    if ((size_t)l1 + (size_t)l2 + (size_t)l3 != n + 1) goto ssl_err;
    if (EVP_CIPHER_CTX_ctrl(cctx, EVP_CTRL_GCM_GET_TAG, WP_TAG_LEN, o + n + 1) <= 0) goto ssl_err;
    out->len += WP_HEADER_LEN + n + 1 + WP_TAG_LEN;
    rc = 0;
    goto out;
ssl_err:
    log_ssl("web push encryption");
out:
    if (rc) out->len = start;
    EVP_CIPHER_CTX_free(cctx);
    EVP_PKEY_free(ua_key);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(ikm, sizeof ikm);
    OPENSSL_cleanse(cek, sizeof cek);
    OPENSSL_cleanse(nonce, sizeof nonce);
    OPENSSL_cleanse(auth_secret, sizeof auth_secret);
    return rc;
}

int webpush_encrypt(const char *p256dh, const char *auth, const uint8_t *plain, size_t n, iy_buf *out)
{
    uint8_t salt[WP_SALT_LEN], as_pub[WP_PUB_LEN];
    EVP_PKEY *as_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    int rc;
    if (!as_key || RAND_bytes(salt, sizeof salt) != 1) {
        log_ssl("web push key generation");
        rc = IY_EIO;
    } else if ((rc = p256_pub(as_key, as_pub)) == 0) {
        rc = encrypt_with(as_key, as_pub, salt, p256dh, auth, plain, n, out);
    }
    EVP_PKEY_free(as_key);
    return rc;
}

int webpush_encrypt_fixed(const uint8_t sender_priv[32], const uint8_t salt[16], const char *p256dh,
                          const char *auth, const uint8_t *plain, size_t n, iy_buf *out)
{
    uint8_t as_pub[WP_PUB_LEN];
    EVP_PKEY *as_key;
    int rc = p256_pub_of_priv(sender_priv, as_pub);
    if (rc) return rc;
    if (!(as_key = p256_from_raw(as_pub, sender_priv))) {
        iy_log_error("push: cannot build the fixed sender key");
        return IY_EIO;
    }
    rc = encrypt_with(as_key, as_pub, salt, p256dh, auth, plain, n, out);
    EVP_PKEY_free(as_key);
    return rc;
}

/* ---- VAPID -------------------------------------------------------------- */

/* 1 if pkey is a P-256 key with a private part. */
static int is_p256_private(EVP_PKEY *pkey)
{
    char group[64];
    size_t len = 0;
    BIGNUM *d = NULL;
    int ok = EVP_PKEY_is_a(pkey, "EC")
             && EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len)
             && strcmp(group, "prime256v1") == 0
             && EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d);
    BN_clear_free(d);
    ERR_clear_error();
    return ok;
}

/* The key file is never encrypted; without this callback OpenSSL would
 * prompt for a passphrase on the terminal. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* Parses a PEM private key (what of: for the log): 0, IY_EIO (logged). */
static int pem_key(const char *pem, size_t len, const char *what, EVP_PKEY **out)
{
    BIO *mem = BIO_new_mem_buf(pem, (int)len);
    EVP_PKEY *pkey = mem ? PEM_read_bio_PrivateKey(mem, NULL, no_passphrase, NULL) : NULL;
    BIO_free(mem);
    if (!pkey) {
        log_ssl("reading the VAPID key");
        iy_log_error("push: %s is not an unencrypted PEM private key", what);
        return IY_EIO;
    }
    if (!is_p256_private(pkey)) {
        iy_log_error("push: %s is not a P-256 (prime256v1) private key", what);
        EVP_PKEY_free(pkey);
        return IY_EIO;
    }
    *out = pkey;
    return 0;
}

int vapid_read_file(const char *path, iy_buf *pem)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT) return IY_ENOTFOUND;
        iy_log_error("push: cannot open VAPID key %s: %s", path, strerror(errno));
        return IY_EIO;
    }
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && pem->len < (1u << 20)) iy_buf_append(pem, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        iy_log_error("push: cannot read VAPID key %s", path);
        return IY_EIO;
    }
    return 0;
}

/* Reads the key at path: 0, IY_ENOTFOUND (no such file), IY_EIO (logged). */
static int vapid_read(const char *path, EVP_PKEY **out)
{
    iy_buf pem = { 0 };
    int rc = vapid_read_file(path, &pem);
    if (rc == 0) rc = pem_key(pem.data ? pem.data : "", pem.len, path, out);
    if (pem.data) OPENSSL_cleanse(pem.data, pem.len);
    iy_buf_free(&pem);
    return rc;
}

/* Makes a new directory entry durable (best effort: the key is in place
 * either way, and a lost one is recreated on the next start). */
static void sync_parent_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? iy_strndup(path, slash == path ? 1 : (size_t)(slash - path)) : iy_strndup(".", 1);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    iy_free(dir);
}

/* Creates a key and publishes it at path atomically: written and synced
 * under a temporary name, then link()ed into place, so a crash never
 * leaves a half-written key and two processes starting at once agree on
 * one key (the loser of the link reads the winner's). 0, IY_EEXIST (path
 * appeared meanwhile), IY_EIO (logged). */
static int vapid_create(const char *path)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *mem = BIO_new(BIO_s_secmem());   /* cleared when freed: it holds the private key */
    char *pem = NULL;
    long pem_len = 0;
    iy_buf tmp = { 0 };
    int fd = -1, rc = IY_EIO;

    if (!pkey || !mem || !PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL)) {
        log_ssl("creating the VAPID key");
        goto out;
    }
    pem_len = BIO_get_mem_data(mem, &pem);
    iy_buf_appendf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    const char *tpath = iy_buf_cstr(&tmp);
    fd = open(tpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        iy_log_error("push: cannot create %s: %s", tpath, strerror(errno));
        goto out;
    }
    for (long off = 0; off < pem_len;) {
        ssize_t w = write(fd, pem + off, (size_t)(pem_len - off));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            iy_log_error("push: cannot write %s: %s", tpath, strerror(errno));
            goto out_unlink;
        }
        off += w;
    }
    if (fsync(fd) != 0) {
        iy_log_error("push: cannot sync %s: %s", tpath, strerror(errno));
        goto out_unlink;
    }
    if (link(tpath, path) != 0) {
        if (errno == EEXIST) rc = IY_EEXIST;
        else iy_log_error("push: cannot create %s: %s", path, strerror(errno));
        goto out_unlink;
    }
    rc = 0;
    sync_parent_dir(path);
    iy_log_info("push: created VAPID key %s", path);
out_unlink:
    unlink(tpath);
out:
    if (fd >= 0) close(fd);
    iy_buf_free(&tmp);
    BIO_free(mem);
    EVP_PKEY_free(pkey);
    return rc;
}

/* The vapid of a loaded key (taken over). */
static int vapid_of(EVP_PKEY *pkey, vapid **out)
{
    uint8_t pub[WP_PUB_LEN];
    int rc = p256_pub(pkey, pub);
    if (rc) {
        EVP_PKEY_free(pkey);
        return rc;
    }
    vapid *v = iy_calloc(1, sizeof *v);
    v->pkey = pkey;
    iy_buf b = { 0 };
    b64url_encode(&b, pub, sizeof pub);
    memcpy(v->pub_b64, b.data, b.len);   /* 87 bytes; calloc left the NUL */
    iy_buf_free(&b);
    *out = v;
    return 0;
}

int vapid_load_or_create(const char *path, vapid **out)
{
    EVP_PKEY *pkey = NULL;
    int rc = vapid_read(path, &pkey);
    if (rc == IY_ENOTFOUND) {
        rc = vapid_create(path);
        if (rc == 0 || rc == IY_EEXIST) rc = vapid_read(path, &pkey);
        if (rc == IY_ENOTFOUND) rc = IY_EIO;
    }
    if (rc) return rc;
    return vapid_of(pkey, out);
}

int vapid_new_pem(iy_buf *pem)
{
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *mem = BIO_new(BIO_s_secmem());   /* cleared when freed: it holds the private key */
    char *p = NULL;
    int rc = IY_EIO;
    if (pkey && mem && PEM_write_bio_PrivateKey(mem, pkey, NULL, NULL, 0, NULL, NULL)) {
        long n = BIO_get_mem_data(mem, &p);
        iy_buf_append(pem, p, (size_t)n);
        rc = 0;
    } else {
        log_ssl("creating the VAPID key");
    }
    BIO_free(mem);
    EVP_PKEY_free(pkey);
    return rc;
}

int vapid_from_pem(const char *pem, size_t len, vapid **out)
{
    EVP_PKEY *pkey = NULL;
    int rc = pem_key(pem, len, "the stored VAPID key", &pkey);
    return rc ? rc : vapid_of(pkey, out);
}

void vapid_free(vapid *v)
{
    if (!v) return;
    EVP_PKEY_free(v->pkey);
    iy_free(v);
}

const char *vapid_public_key(const vapid *v) { return v->pub_b64; }

/* 1 if s is an origin: "https://" or "http://", a non-empty host[:port],
 * no path, no whitespace or control characters. */
static int is_origin(const char *s)
{
    const char *h;
    if (!s) return 0;
    if (strncmp(s, "https://", 8) == 0) h = s + 8;
    else if (strncmp(s, "http://", 7) == 0) h = s + 7;
    else return 0;
    if (!*h) return 0;
    for (; *h; h++)
        if ((unsigned char)*h <= 0x20 || *h == 0x7f || *h == '/' || *h == '"' || *h == '\\') return 0;
    return 1;
}

/* ES256 over data: the 64-byte JOSE signature (r || s, each left-padded to
 * 32 bytes, RFC 7518 §3.4) rather than OpenSSL's DER. 0 or IY_EIO. */
static int es256_sign(EVP_PKEY *pkey, const void *data, size_t n, uint8_t sig[64])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    uint8_t der[80];
    size_t der_len = sizeof der;
    ECDSA_SIG *es = NULL;
    const BIGNUM *r, *s;
    int rc = IY_EIO;
    if (!md || EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, pkey, NULL) <= 0
        || EVP_DigestSign(md, der, &der_len, data, n) <= 0)
        goto out;
    const unsigned char *p = der;
    if (!(es = d2i_ECDSA_SIG(NULL, &p, (long)der_len)) || p != der + der_len) goto out;
    ECDSA_SIG_get0(es, &r, &s);
    if (BN_bn2binpad(r, sig, 32) != 32 || BN_bn2binpad(s, sig + 32, 32) != 32) goto out;
    rc = 0;
out:
    if (rc) log_ssl("signing the VAPID token");
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    return rc;
}

int vapid_authorization(const vapid *v, const char *audience, const char *subject, int64_t now_s,
                        iy_buf *out)
{
    /* b64url({"typ":"JWT","alg":"ES256"}) */
    static const char jwt_header[] = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9";
    if (!v || !is_origin(audience)) return IY_EINVAL;
    if (now_s < 0 || now_s > INT64_MAX - WP_JWT_TTL_S) return IY_EINVAL;

    iy_buf claims = { 0 }, input = { 0 };
    uint8_t sig[64];
    iy_buf_append_str(&claims, "{\"aud\":");
    jw_cstr(&claims, audience);
    iy_buf_appendf(&claims, ",\"exp\":%lld", (long long)(now_s + WP_JWT_TTL_S));
    if (subject && *subject) {
        iy_buf_append_str(&claims, ",\"sub\":");
        jw_cstr(&claims, subject);
    }
    iy_buf_putc(&claims, '}');

    iy_buf_append(&input, jwt_header, sizeof jwt_header - 1);
    iy_buf_putc(&input, '.');
    b64url_encode(&input, (const uint8_t *)claims.data, claims.len);
    int rc = es256_sign(v->pkey, input.data, input.len, sig);
    if (rc == 0) {
        iy_buf_append_str(out, "vapid t=");
        iy_buf_append(out, input.data, input.len);
        iy_buf_putc(out, '.');
        b64url_encode(out, sig, sizeof sig);
        iy_buf_append_str(out, ", k=");
        iy_buf_append_str(out, v->pub_b64);
    }
    iy_buf_free(&input);
    iy_buf_free(&claims);
    return rc;
}

/* ---- webhooks ----------------------------------------------------------- */

void webhook_signature(const char *secret, const void *body, size_t n, char out[72])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t mac[32];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), secret ? secret : "", secret ? (int)strlen(secret) : 0,
              n ? body : (const void *)"", n, mac, &len) || len != sizeof mac) {
        log_ssl("webhook signature");
        out[0] = '\0';
        return;
    }
    memcpy(out, "sha256=", 7);
    for (size_t i = 0; i < sizeof mac; i++) {
        out[7 + 2 * i] = hex[mac[i] >> 4];
        out[8 + 2 * i] = hex[mac[i] & 15];
    }
    out[71] = '\0';
}
