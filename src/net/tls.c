/* tls.c — OpenSSL 3 behind memory BIOs; the contract and the data flow
 * are in tls.h.
 *
 * Connection states, as OpenSSL keeps them (conn.c asks tls_established):
 *
 *   new ──feed/read──> handshaking ──Finished──> established ──seal(notify)──> close_notify sent
 *                          │                         │
 *                          └── alert, garbage ───────┴──> failed (tls_read < 0): only the
 *                              alert may still be sealed and sent; then the socket closes
 *
 * Invariants: OpenSSL's error queue is per thread and is cleared before
 * every SSL call whose outcome is read with SSL_get_error; a failed
 * connection never sees SSL_read/SSL_write/SSL_shutdown again; a memory BIO
 * that is empty holds no buffer (it is replaced by a fresh one). */
#include "tls.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include <errno.h>
#include <stdlib.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* TLS 1.2: forward secrecy and AEAD only, ECDSA first (cheaper handshakes),
 * AES-GCM (hardware) before ChaCha20. TLS 1.3's suites are all AEAD:
 * OpenSSL's three, AES-128 first (its default puts AES-256 first). */
#define TLS12_CIPHERS                                                                                  \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"         \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"
#define TLS_GROUPS "X25519:P-256:P-384"

struct tls_server {
    pthread_mutex_t mu;
    SSL_CTX *ctx;               /* under mu: the context new connections get (one reference ours) */
    char *cert, *key;           /* the files, read again by tls_server_reload */
};

struct tls_conn {
    SSL *ssl;                   /* owns both memory BIOs */
    unsigned long err;          /* OpenSSL's error code of the failure; 0: none */
    int failed;
};

/* Writes OpenSSL's most specific reason for the error queue's last entry
 * (or fallback) into err, and empties the queue. */
static void reason(char *err, size_t errn, const char *what, const char *file, const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errn, "%s %s: %s", what, file, r ? r : fallback);
    ERR_clear_error();
}

/* Offers HTTP/1.1 to a client that asks with ALPN (browsers offer h2
 * first); a client that asks for nothing else gets no ALPN answer. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
        if (in[i] == 8 && i + 9 <= inlen && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

static int build_ctx(const char *cert, const char *key, SSL_CTX **out, char *err, size_t errn)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        reason(err, errn, "cannot create a TLS context", "", "out of memory");
        return IY_EINVAL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* No server-side session cache (memory, a lock shared by the threads):
     * resumption is by stateless tickets, one per handshake. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 || SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
        SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1) {
        reason(err, errn, "cannot configure TLS", "", "unsupported cipher or group");
        goto err;
    }
    FILE *f = fopen(cert, "r");
    if (!f) {
        snprintf(err, errn, "cannot read the certificate %s: %s", cert, strerror(errno));
        goto err;
    }
    fclose(f);
    if (!(f = fopen(key, "r"))) {
        snprintf(err, errn, "cannot read the private key %s: %s", key, strerror(errno));
        goto err;
    }
    fclose(f);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        reason(err, errn, "no PEM certificate in", cert, "unreadable");
        goto err;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        unsigned long e = ERR_peek_last_error();
        if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errn, "the private key %s does not match the certificate %s", key, cert);
        else
            reason(err, errn, "no usable PEM private key in", key, "unreadable");
        goto err;
    }
    *out = ctx;
    return 0;
err:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return IY_EINVAL;
}

int tls_server_new(const char *cert, const char *key, tls_server **out, char *err, size_t errn)
{
    SSL_CTX *ctx;
    if (build_ctx(cert, key, &ctx, err, errn) != 0) return IY_EINVAL;
    tls_server *s = iy_calloc(1, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->ctx = ctx;
    s->cert = iy_strndup(cert, strlen(cert));
    s->key = iy_strndup(key, strlen(key));
    *out = s;
    return 0;
}

int tls_server_reload(tls_server *s, char *err, size_t errn)
{
    SSL_CTX *ctx, *old;
    if (build_ctx(s->cert, s->key, &ctx, err, errn) != 0) return IY_EINVAL;
    pthread_mutex_lock(&s->mu);
    old = s->ctx;
    s->ctx = ctx;
    pthread_mutex_unlock(&s->mu);
    SSL_CTX_free(old);   /* our reference: connections on it hold their own */
    return 0;
}

void tls_server_free(tls_server *s)
{
    if (!s) return;
    SSL_CTX_free(s->ctx);
    pthread_mutex_destroy(&s->mu);
    iy_free(s->cert);
    iy_free(s->key);
    iy_free(s);
}

/* The out-of-memory policy of base/alloc.h: OpenSSL's allocations too. */
static void oom(const char *what)
{
    fprintf(stderr, "iyagi: out of memory (%s)\n", what);
    abort();
}

static BIO *mem_bio(void)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b) oom("TLS memory BIO");
    return b;   /* an empty read is "retry" (eof return -1, the default) */
}

tls_conn *tls_conn_new(tls_server *s)
{
    tls_conn *t = iy_calloc(1, sizeof *t);
    pthread_mutex_lock(&s->mu);
    t->ssl = SSL_new(s->ctx);   /* takes a reference to the context */
    pthread_mutex_unlock(&s->mu);
    if (!t->ssl) oom("SSL_new");
    SSL_set_bio(t->ssl, mem_bio(), mem_bio());
    SSL_set_accept_state(t->ssl);
    return t;
}

void tls_conn_free(tls_conn *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    iy_free(t);
}

/* An empty memory BIO keeps the buffer of its biggest moment; an idle
 * connection should not: a drained one is replaced by a fresh, bufferless
 * one. */
static void release_rbio(tls_conn *t)
{
    BIO *b = SSL_get_rbio(t->ssl);
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(b) == 0 && BIO_get_mem_ptr(b, &bm) == 1 && bm && bm->max) SSL_set0_rbio(t->ssl, mem_bio());
}

static void release_wbio(tls_conn *t)
{
    BIO *b = SSL_get_wbio(t->ssl);
    BUF_MEM *bm = NULL;
    if (BIO_ctrl_pending(b) == 0 && BIO_get_mem_ptr(b, &bm) == 1 && bm && bm->max) SSL_set0_wbio(t->ssl, mem_bio());
}

int tls_feed(tls_conn *t, const char *data, size_t len)
{
    BIO *b = SSL_get_rbio(t->ssl);
    while (len) {
        int n = BIO_write(b, data, len > INT_MAX ? INT_MAX : (int)len);
        if (n <= 0) oom("TLS read BIO");
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int tls_read(tls_conn *t, char *buf, size_t cap)
{
    if (t->failed) return IY_EPROTO;
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (n > 0) return n;
    switch (SSL_get_error(t->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:   /* a memory BIO takes any write: not reached */
        release_rbio(t);
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        t->failed = 1;
        return IY_EIO;
    default:
        t->failed = 1;
        t->err = ERR_peek_last_error();
        if (!t->err) t->err = 1;
        ERR_clear_error();
        return IY_EPROTO;
    }
}

int tls_seal(tls_conn *t, iy_buf *buf, int notify)
{
    int ok = !t->failed && SSL_is_init_finished(t->ssl);
    if (ok && buf->len) {
        ERR_clear_error();
        /* Without SSL_MODE_ENABLE_PARTIAL_WRITE, one call writes it all. */
        for (size_t done = 0; done < buf->len && ok;) {
            size_t n = buf->len - done;
            int w = SSL_write(t->ssl, buf->data + done, n > INT_MAX ? INT_MAX : (int)n);
            if (w <= 0) {
                t->failed = 1;
                ERR_clear_error();
                ok = 0;
            } else {
                done += (size_t)w;
            }
        }
    }
    iy_buf_reset(buf);
    if (ok && notify && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);   /* queues close_notify; the peer's is not waited for */
        ERR_clear_error();
    }
    BIO *b = SSL_get_wbio(t->ssl);
    size_t p = BIO_ctrl_pending(b);
    if (p) {
        iy_buf_reserve(buf, p);
        int n = BIO_read(b, buf->data, (int)p);
        buf->len = n > 0 ? (size_t)n : 0;
    }
    release_wbio(t);
    return 0;
}

size_t tls_pending(const tls_conn *t) { return BIO_ctrl_pending(SSL_get_wbio(t->ssl)); }

int tls_established(const tls_conn *t) { return SSL_is_init_finished(t->ssl); }

const char *tls_error(const tls_conn *t)
{
    const char *r = t->err > 1 ? ERR_reason_error_string(t->err) : NULL;
    return r ? r : "the peer broke the TLS protocol";
}
