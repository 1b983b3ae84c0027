/* test_webpush.c — push cryptography against published vectors:
 * RFC 8291 Appendix A byte for byte, a browser-side decryption (written
 * here independently with OpenSSL) of randomly keyed messages, VAPID JWTs
 * verified with the public key they announce, RFC 4231 HMAC-SHA256 vectors
 * for webhook signatures, and base64url edge cases. */
#include "t.h"
#include "push/webpush.h"
#include "base/buf.h"
#include "base/err.h"
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

/* RFC 8291 Appendix A (§5 example). The values agree with the RFC text as
 * quoted by several independent implementations' test suites. */
#define RFC_PLAIN "When I grow up, I want to be a watermelon"
#define RFC_UA_PRIV "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
#define RFC_UA_PUB "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
#define RFC_AUTH "BTBZMqHH6r4Tts7J_aSIgg"
#define RFC_AS_PRIV "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
#define RFC_AS_PUB "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
#define RFC_SALT "DGv6ra1nlYgDCS1FRnbzlw"
#define RFC_BODY "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"

static size_t unb64(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    int rc = b64url_decode(s, strlen(s), out, cap, &n);
    CHECK_EQ(rc, 0);
    return rc ? 0 : n;
}

/* ---- base64url ---------------------------------------------------------- */

static int dec(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    return b64url_decode(s, strlen(s), out, cap, n);
}

static void test_b64(void)
{
    static const struct { const char *plain, *enc; } v[] = {   /* RFC 4648 §10, unpadded */
        { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg" }, { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        iy_buf b = { 0 };
        b64url_encode(&b, (const uint8_t *)v[i].plain, strlen(v[i].plain));
        CHECK(b.len == strlen(v[i].enc) && memcmp(b.data, v[i].enc, b.len) == 0);
        uint8_t out[8];
        size_t n = 99;
        CHECK_EQ(dec(v[i].enc, out, sizeof out, &n), 0);
        CHECK(n == strlen(v[i].plain) && memcmp(out, v[i].plain, n) == 0);
        iy_buf_free(&b);
    }

    /* Appends, and uses the URL-safe alphabet. */
    iy_buf b = { 0 };
    iy_buf_append_str(&b, "x:");
    const uint8_t hi[] = { 0xfb, 0xff, 0xbf };
    b64url_encode(&b, hi, sizeof hi);
    CHECK_MEM(b.data, b.len, "x:-_-_");
    iy_buf_free(&b);

    uint8_t out[16];
    size_t n = 0;
    /* Both alphabets decode to the same bytes. */
    CHECK_EQ(dec("-_-_", out, sizeof out, &n), 0);
    CHECK(n == 3 && memcmp(out, hi, 3) == 0);
    CHECK_EQ(dec("+/+/", out, sizeof out, &n), 0);
    CHECK(n == 3 && memcmp(out, hi, 3) == 0);
    /* Optional padding, only in the right amount. */
    CHECK_EQ(dec("Zg==", out, sizeof out, &n), 0);
    CHECK(n == 1 && out[0] == 'f');
    CHECK_EQ(dec("Zm8=", out, sizeof out, &n), 0);
    CHECK(n == 2 && memcmp(out, "fo", 2) == 0);
    CHECK_EQ(dec("Zg=", out, sizeof out, &n), IY_EINVAL);    /* length not a multiple of 4 */
    CHECK_EQ(dec("Zg===", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Zm9v====", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Z===", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("=", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Zg=a", out, sizeof out, &n), IY_EINVAL);   /* '=' inside */
    /* Bad characters and impossible lengths. */
    CHECK_EQ(dec("Zm9v!", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Zm 9v", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Zm9\n", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Z", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Zm9vY", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(b64url_decode("Zm\0v", 4, out, sizeof out, &n), IY_EINVAL);
    /* Non-zero leftover bits are not a canonical encoding. */
    CHECK_EQ(dec("Zh", out, sizeof out, &n), IY_EINVAL);
    CHECK_EQ(dec("Zm9", out, sizeof out, &n), IY_EINVAL);
    /* The cap: exactly enough is fine, one byte short is not. */
    CHECK_EQ(dec("Zm9vYmFy", out, 6, &n), 0);
    CHECK_EQ(n, 6);
    CHECK_EQ(dec("Zm9vYmFy", out, 5, &n), IY_EINVAL);
    CHECK_EQ(dec("Zm9vYmE", out, 4, &n), IY_EINVAL);
    CHECK_EQ(dec("", out, 0, &n), 0);
    CHECK_EQ(n, 0);
}

/* ---- the user agent's side of RFC 8291 ---------------------------------- */

static EVP_PKEY *p256_key(const uint8_t pub[65], const uint8_t *priv)
{
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *d = priv ? BN_bin2bn(priv, 32, NULL) : NULL;
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 65);
    if (d) OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *pkey = NULL;
    if (EVP_PKEY_fromdata_init(ctx) <= 0
        || EVP_PKEY_fromdata(ctx, &pkey, d ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    BN_free(d);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

/* HKDF-SHA-256 written out as its two HMAC steps (RFC 5869), so the test
 * does not share the library's use of the HKDF KDF. len <= 32. */
static void hkdf_hmac(const uint8_t *salt, size_t sl, const uint8_t *ikm, size_t il, const uint8_t *info,
                      size_t nl, uint8_t *okm, size_t len)
{
    uint8_t prk[32], t[32], msg[160];
    size_t plen = sizeof prk, tlen = sizeof t;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, salt, sl, ikm, il, prk, sizeof prk, &plen);
    memcpy(msg, info, nl);
    msg[nl] = 0x01;
    EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, prk, plen, msg, nl + 1, t, sizeof t, &tlen);
    memcpy(okm, t, len);
}

/* Decrypts an aes128gcm body of one record for the UA (ua_pub, ua_priv,
 * auth). Returns the plaintext length or -1; checks the header layout. */
static int ua_decrypt(const uint8_t *body, size_t n, const uint8_t ua_pub[65], const uint8_t ua_priv[32],
                      const uint8_t auth[16], uint8_t *plain)
{
    if (n < 86 + 1 + 16) return -1;
    uint32_t rs = (uint32_t)body[16] << 24 | (uint32_t)body[17] << 16 | (uint32_t)body[18] << 8 | body[19];
    if (rs != 4096 || body[20] != 65 || body[21] != 0x04 || n - 86 > rs) return -1;
    const uint8_t *salt = body, *as_pub = body + 21, *rec = body + 86;
    size_t rlen = n - 86;

    EVP_PKEY *mine = p256_key(ua_pub, ua_priv), *peer = p256_key(as_pub, NULL);
    uint8_t secret[32];
    size_t slen = sizeof secret;
    EVP_PKEY_CTX *dctx = mine && peer ? EVP_PKEY_CTX_new_from_pkey(NULL, mine, NULL) : NULL;
    int ok = dctx && EVP_PKEY_derive_init(dctx) > 0 && EVP_PKEY_derive_set_peer(dctx, peer) > 0
             && EVP_PKEY_derive(dctx, secret, &slen) > 0 && slen == 32;
    EVP_PKEY_CTX_free(dctx);
    EVP_PKEY_free(mine);
    EVP_PKEY_free(peer);
    if (!ok) return -1;

    uint8_t info[14 + 130], ikm[32], cek[16], nonce[12];
    memcpy(info, "WebPush: info\0", 14);
    memcpy(info + 14, ua_pub, 65);
    memcpy(info + 79, as_pub, 65);
    hkdf_hmac(auth, 16, secret, 32, info, sizeof info, ikm, 32);
    hkdf_hmac(salt, 16, ikm, 32, (const uint8_t *)"Content-Encoding: aes128gcm\0", 28, cek, 16);
    hkdf_hmac(salt, 16, ikm, 32, (const uint8_t *)"Content-Encoding: nonce\0", 24, nonce, 12);

    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int l1 = 0, l2 = 0;
    ok = EVP_DecryptInit_ex2(c, EVP_aes_128_gcm(), cek, nonce, NULL)
         && EVP_DecryptUpdate(c, plain, &l1, rec, (int)(rlen - 16))
         && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void *)(rec + rlen - 16)) > 0
         && EVP_DecryptFinal_ex(c, plain + l1, &l2) > 0;
    EVP_CIPHER_CTX_free(c);
    if (!ok) return -1;
    /* Strip the padding: zeros, then the last-record delimiter 0x02. */
    int len = l1 + l2;
    while (len > 0 && plain[len - 1] == 0) len--;
    if (len == 0 || plain[len - 1] != 0x02) return -1;
    return len - 1;
}

struct rfc { uint8_t ua_pub[65], ua_priv[32], auth[16], as_priv[32], salt[16]; };

static void rfc_load(struct rfc *r)
{
    CHECK_EQ(unb64(RFC_UA_PUB, r->ua_pub, 65), 65);
    CHECK_EQ(unb64(RFC_UA_PRIV, r->ua_priv, 32), 32);
    CHECK_EQ(unb64(RFC_AUTH, r->auth, 16), 16);
    CHECK_EQ(unb64(RFC_AS_PRIV, r->as_priv, 32), 32);
    CHECK_EQ(unb64(RFC_SALT, r->salt, 16), 16);
}

static void test_rfc8291_vector(void)
{
    struct rfc r;
    rfc_load(&r);
    iy_buf out = { 0 };
    iy_buf_append_str(&out, "prefix");  /* appends: what was there stays */
    CHECK_EQ(webpush_encrypt_fixed(r.as_priv, r.salt, RFC_UA_PUB, RFC_AUTH, (const uint8_t *)RFC_PLAIN,
                                   strlen(RFC_PLAIN), &out), 0);
    CHECK(out.len > 6 && memcmp(out.data, "prefix", 6) == 0);
    iy_buf enc = { 0 };
    b64url_encode(&enc, (const uint8_t *)out.data + 6, out.len - 6);
    CHECK_MEM(enc.data, enc.len, RFC_BODY);
    if (enc.len != strlen(RFC_BODY) || memcmp(enc.data, RFC_BODY, enc.len) != 0)
        fprintf(stderr, "got  %.*s\nwant %s\n", (int)enc.len, enc.data, RFC_BODY);

    /* The keyid is the RFC's application server public key. */
    uint8_t as_pub[65];
    CHECK_EQ(unb64(RFC_AS_PUB, as_pub, 65), 65);
    CHECK(out.len >= 6 + 86 && memcmp(out.data + 6 + 21, as_pub, 65) == 0);

    /* And the UA side reads it back (checks the decryptor below too). */
    uint8_t plain[4096];
    int n = ua_decrypt((const uint8_t *)out.data + 6, out.len - 6, r.ua_pub, r.ua_priv, r.auth, plain);
    CHECK(n == (int)strlen(RFC_PLAIN) && memcmp(plain, RFC_PLAIN, (size_t)n) == 0);

    /* Padded input (key given with '=' padding, standard alphabet) is the same subscription. */
    iy_buf std = { 0 };
    iy_buf_append_str(&std, RFC_AUTH);
    iy_buf_append_str(&std, "==");
    iy_buf body2 = { 0 };
    CHECK_EQ(webpush_encrypt_fixed(r.as_priv, r.salt, RFC_UA_PUB, iy_buf_cstr(&std), (const uint8_t *)RFC_PLAIN,
                                   strlen(RFC_PLAIN), &body2), 0);
    CHECK(body2.len == out.len - 6 && memcmp(body2.data, out.data + 6, body2.len) == 0);
    iy_buf_free(&body2);
    iy_buf_free(&std);
    iy_buf_free(&enc);
    iy_buf_free(&out);
}

static void test_roundtrip(void)
{
    struct rfc r;
    rfc_load(&r);
    static uint8_t msg[3993];
    for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 7 + 3);
    static const size_t sizes[] = { 0, 1, 15, 16, 17, 41, 1000, 3993 };
    uint8_t first_salt[16] = { 0 }, first_key[65] = { 0 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t len = sizes[k];
        iy_buf out = { 0 };
        CHECK_EQ(webpush_encrypt(RFC_UA_PUB, RFC_AUTH, msg, len, &out), 0);
        CHECK_EQ(out.len, 86 + len + 1 + 16);
        CHECK(out.len <= 4096);
        uint8_t plain[4096];
        int n = ua_decrypt((const uint8_t *)out.data, out.len, r.ua_pub, r.ua_priv, r.auth, plain);
        CHECK(n == (int)len && memcmp(plain, msg, len) == 0);
        /* Fresh salt and key every time. */
        if (k == 0) {
            memcpy(first_salt, out.data, 16);
            memcpy(first_key, out.data + 21, 65);
        } else {
            CHECK(memcmp(first_salt, out.data, 16) != 0);
            CHECK(memcmp(first_key, out.data + 21, 65) != 0);
        }
        /* Any flipped bit in the record fails authentication. */
        if (len > 0) {
            out.data[86 + len / 2] ^= 0x10;
            CHECK_EQ(ua_decrypt((const uint8_t *)out.data, out.len, r.ua_pub, r.ua_priv, r.auth, plain), -1);
        }
        iy_buf_free(&out);
    }
    /* A different auth secret cannot read it. */
    iy_buf out = { 0 };
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB, RFC_AUTH, msg, 10, &out), 0);
    uint8_t wrong[16], plain[64];
    memcpy(wrong, r.auth, 16);
    wrong[0] ^= 1;
    CHECK_EQ(ua_decrypt((const uint8_t *)out.data, out.len, r.ua_pub, r.ua_priv, wrong, plain), -1);
    iy_buf_free(&out);
}

static void test_bad_keys(void)
{
    struct rfc r;
    rfc_load(&r);
    const uint8_t *p = (const uint8_t *)"hi";
    iy_buf out = { 0 };
    iy_buf_append_str(&out, "keep");

    uint8_t pt[65];
    iy_buf s = { 0 };
    /* Not base64, truncated, too long, NULL. */
    CHECK_EQ(webpush_encrypt("not base64!", RFC_AUTH, p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt("BCVxsr7N_eNgVRqvHtD0zTZsEc6", RFC_AUTH, p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB "AAAA", RFC_AUTH, p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt(NULL, RFC_AUTH, p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB, NULL, p, 2, &out), IY_EINVAL);
    /* Compressed-point prefix. */
    memcpy(pt, r.ua_pub, 65);
    pt[0] = 0x02;
    b64url_encode(&s, pt, 65);
    CHECK_EQ(webpush_encrypt(iy_buf_cstr(&s), RFC_AUTH, p, 2, &out), IY_EINVAL);
    /* A point off the curve (y changed). */
    memcpy(pt, r.ua_pub, 65);
    pt[64] ^= 1;
    iy_buf_reset(&s);
    b64url_encode(&s, pt, 65);
    CHECK_EQ(webpush_encrypt(iy_buf_cstr(&s), RFC_AUTH, p, 2, &out), IY_EINVAL);
    /* All zeros (not a point; also what the point at infinity would look like). */
    memset(pt, 0, 65);
    pt[0] = 0x04;
    iy_buf_reset(&s);
    b64url_encode(&s, pt, 65);
    CHECK_EQ(webpush_encrypt(iy_buf_cstr(&s), RFC_AUTH, p, 2, &out), IY_EINVAL);
    /* Auth secret of the wrong size. */
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB, "BTBZMqHH6r4Tts7J_aSI", p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB, "BTBZMqHH6r4Tts7J_aSIggAA", p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB, "", p, 2, &out), IY_EINVAL);
    /* Too long for one 4096-byte body. */
    static uint8_t big[3994];
    CHECK_EQ(webpush_encrypt(RFC_UA_PUB, RFC_AUTH, big, sizeof big, &out), IY_EINVAL);
    /* Sender private keys out of range: 0 and the group order n. */
    uint8_t zero[32] = { 0 }, order[32];
    BIGNUM *bn = NULL;
    BN_hex2bn(&bn, "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    BN_bn2binpad(bn, order, 32);
    BN_free(bn);
    CHECK_EQ(webpush_encrypt_fixed(zero, r.salt, RFC_UA_PUB, RFC_AUTH, p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt_fixed(order, r.salt, RFC_UA_PUB, RFC_AUTH, p, 2, &out), IY_EINVAL);
    CHECK_EQ(webpush_encrypt_fixed(r.as_priv, r.salt, "x", RFC_AUTH, p, 2, &out), IY_EINVAL);
    /* Failures leave out as it was. */
    CHECK_MEM(out.data, out.len, "keep");
    iy_buf_free(&s);
    iy_buf_free(&out);
}

/* ---- VAPID -------------------------------------------------------------- */

/* Splits "vapid t=<h>.<c>.<s>, k=<k>" and checks it: the header and
 * claims JSON, and the signature verified with k. */
static void check_auth_header(const char *hdr, size_t len, const char *pub_b64, const char *want_claims)
{
    CHECK(len > 8 && memcmp(hdr, "vapid t=", 8) == 0);
    const char *k = strstr(hdr, ", k=");
    CHECK(k != NULL);
    if (!k) return;
    CHECK(strcmp(k + 4, pub_b64) == 0);
    const char *t = hdr + 8, *dot1 = memchr(t, '.', (size_t)(k - t));
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(k - dot1 - 1)) : NULL;
    CHECK(dot1 && dot2);
    if (!dot1 || !dot2) return;

    uint8_t json[512], sig[80];
    size_t n = 0;
    CHECK_EQ(b64url_decode(t, (size_t)(dot1 - t), json, sizeof json, &n), 0);
    CHECK_MEM(json, n, "{\"typ\":\"JWT\",\"alg\":\"ES256\"}");
    CHECK_EQ(b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), json, sizeof json, &n), 0);
    CHECK(n == strlen(want_claims) && memcmp(json, want_claims, n) == 0);
    if (n != strlen(want_claims) || memcmp(json, want_claims, n) != 0)
        fprintf(stderr, "claims %.*s\n", (int)n, json);
    CHECK_EQ(b64url_decode(dot2 + 1, (size_t)(k - dot2 - 1), sig, sizeof sig, &n), 0);
    CHECK_EQ(n, 64);

    /* JOSE r||s back to DER, verified over "<h>.<c>" with the key in k. */
    uint8_t pub[65];
    CHECK_EQ(unb64(pub_b64, pub, sizeof pub), 65);
    EVP_PKEY *pk = p256_key(pub, NULL);
    CHECK(pk != NULL);
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    unsigned char *der = NULL;
    int der_len = i2d_ECDSA_SIG(es, &der);
    CHECK(der_len > 0);
    for (int tamper = 0; tamper < 2; tamper++) {
        iy_buf msg = { 0 };
        iy_buf_append(&msg, t, (size_t)(dot2 - t));
        if (tamper) msg.data[msg.len - 1] ^= 1;
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok = EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pk, NULL) > 0
                 && EVP_DigestVerify(md, der, (size_t)der_len, (const uint8_t *)msg.data, msg.len) == 1;
        CHECK_EQ(ok, !tamper);
        EVP_MD_CTX_free(md);
        iy_buf_free(&msg);
    }
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_PKEY_free(pk);
}

static void test_vapid(void)
{
    char dir[] = "/tmp/iyagi-webpush-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128], bad[128];
    snprintf(path, sizeof path, "%s/vapid.pem", dir);
    snprintf(bad, sizeof bad, "%s/bad.pem", dir);

    vapid *a = NULL, *b = NULL;
    CHECK_EQ(vapid_load_or_create(path, &a), 0);
    CHECK(a != NULL);
    if (!a) return;
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_mode & 0777, 0600);
    FILE *f = fopen(path, "r");
    char line[64] = "";
    CHECK(f && fgets(line, sizeof line, f));
    if (f) fclose(f);
    CHECK(strcmp(line, "-----BEGIN PRIVATE KEY-----\n") == 0);   /* PKCS#8 */

    const char *pub = vapid_public_key(a);
    CHECK_EQ(strlen(pub), 87);
    CHECK(pub[0] == 'B');   /* 0x04 prefix */
    CHECK_EQ(vapid_load_or_create(path, &b), 0);
    CHECK(b && strcmp(vapid_public_key(b), pub) == 0);

    iy_buf h = { 0 };
    CHECK_EQ(vapid_authorization(a, "https://push.example.net", "mailto:ops@example.com", 1700000000, &h), 0);
    check_auth_header(iy_buf_cstr(&h), h.len, pub,
                      "{\"aud\":\"https://push.example.net\",\"exp\":1700043200,\"sub\":\"mailto:ops@example.com\"}");
    /* Signed with the same key when reloaded; ECDSA is randomized, so the
     * tokens differ but both verify. */
    iy_buf h2 = { 0 };
    CHECK_EQ(vapid_authorization(b, "https://push.example.net:8443", "mailto:a\"b@x", 0, &h2), 0);
    check_auth_header(iy_buf_cstr(&h2), h2.len, pub,
                      "{\"aud\":\"https://push.example.net:8443\",\"exp\":43200,\"sub\":\"mailto:a\\\"b@x\"}");
    iy_buf_reset(&h2);
    CHECK_EQ(vapid_authorization(b, "https://fcm.googleapis.com", NULL, 10, &h2), 0);
    check_auth_header(iy_buf_cstr(&h2), h2.len, pub, "{\"aud\":\"https://fcm.googleapis.com\",\"exp\":43210}");

    /* Not an origin. */
    iy_buf_reset(&h2);
    CHECK_EQ(vapid_authorization(a, "https://push.example.net/x", "mailto:x@y", 1, &h2), IY_EINVAL);
    CHECK_EQ(vapid_authorization(a, "push.example.net", "mailto:x@y", 1, &h2), IY_EINVAL);
    CHECK_EQ(vapid_authorization(a, "https://", "mailto:x@y", 1, &h2), IY_EINVAL);
    CHECK_EQ(vapid_authorization(a, NULL, "mailto:x@y", 1, &h2), IY_EINVAL);
    CHECK_EQ(vapid_authorization(a, "https://a\"b", "mailto:x@y", 1, &h2), IY_EINVAL);
    CHECK_EQ(h2.len, 0);

    /* A corrupt or foreign key file is an error, and is not replaced. */
    f = fopen(bad, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", f);
        fclose(f);
    }
    vapid *c = NULL;
    CHECK_EQ(vapid_load_or_create(bad, &c), IY_EIO);
    CHECK(c == NULL);
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    f = fopen(bad, "w");
    CHECK(f && p384 && PEM_write_PrivateKey(f, p384, NULL, NULL, 0, NULL, NULL));
    if (f) fclose(f);
    EVP_PKEY_free(p384);
    CHECK_EQ(vapid_load_or_create(bad, &c), IY_EIO);
    /* A passphrase-protected key is refused without prompting on the terminal. */
    EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f = fopen(bad, "w");
    CHECK(f && p256 && PEM_write_PrivateKey(f, p256, EVP_aes_128_cbc(), (unsigned char *)"pw", 2, NULL, NULL));
    if (f) fclose(f);
    EVP_PKEY_free(p256);
    CHECK_EQ(vapid_load_or_create(bad, &c), IY_EIO);
    /* An unwritable place. */
    snprintf(bad, sizeof bad, "%s/no/such/dir/vapid.pem", dir);
    CHECK_EQ(vapid_load_or_create(bad, &c), IY_EIO);

    iy_buf_free(&h2);
    iy_buf_free(&h);
    vapid_free(a);
    vapid_free(b);
    vapid_free(NULL);
    snprintf(bad, sizeof bad, "%s/bad.pem", dir);
    unlink(bad);
    unlink(path);
    /* No temporary file left behind. */
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));) entries += e->d_name[0] != '.';
    if (d) closedir(d);
    CHECK_EQ(entries, 0);
    rmdir(dir);
}

/* ---- webhooks ----------------------------------------------------------- */

static void test_webhook(void)
{
    char sig[72];
    /* RFC 4231 test case 2. */
    const char *data = "what do ya want for nothing?";
    webhook_signature("Jefe", data, strlen(data), sig);
    CHECK(strcmp(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843") == 0);
    /* RFC 4231 test case 1: key 20 x 0x0b, "Hi There". */
    webhook_signature("\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b\x0b", "Hi There",
                      8, sig);
    CHECK(strcmp(sig, "sha256=b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7") == 0);
    /* Empty body. */
    webhook_signature("key", NULL, 0, sig);
    CHECK(strcmp(sig, "sha256=5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0") == 0);
    CHECK_EQ(strlen(sig), 71);
}

int main(void)
{
    test_b64();
    test_rfc8291_vector();
    test_roundtrip();
    test_bad_keys();
    test_vapid();
    test_webhook();
    return T_DONE("test_webpush");
}
