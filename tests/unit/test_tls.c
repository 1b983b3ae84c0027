/* test_tls.c — net/tls.c against an OpenSSL client over memory, no socket:
 * handshakes fed whole, one byte at a time and in odd chunks; data both
 * ways; close_notify both ways; garbage, a plain HTTP request and TLS 1.1
 * refused with an alert; plaintext queued before the handshake never
 * leaves; a reload swaps the certificate for new connections only; files
 * that cannot be used are refused with the reason. The certificates are
 * made by the `openssl` CLI in a temporary directory. */
#include "t.h"
#include "net/tls.h"
#include "base/buf.h"
#include "base/err.h"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

static char dir[] = "/tmp/iyagi-test-tls-XXXXXX";
static char path_buf[8][512];

static const char *file(int slot, const char *name)
{
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static int sh(const char *cmd)
{
    char c[2048];
    snprintf(c, sizeof c, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(c);
}

/* a.pem/a.key (CN a), b.pem/b.key (CN b): self-signed P-256, for localhost. */
static int make_certs(void)
{
    if (!mkdtemp(dir)) return -1;
    const char *fmt = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
                      "-out %s.pem -days 1 -subj /CN=%s -addext subjectAltName=DNS:localhost";
    char c[512];
    for (const char *n = "a"; *n <= 'b'; n = *n == 'a' ? "b" : "c") {
        snprintf(c, sizeof c, fmt, n, n, n);
        if (sh(c) != 0) return -1;
        if (*n == 'b') break;
    }
    return sh("printf 'not a certificate\\n' > junk.pem");
}

/* ---- a client over memory BIOs, and the pumps between it and the server ---- */

typedef struct client {
    SSL_CTX *ctx;
    SSL *ssl;
} client;

static void client_new(client *c, const char *trust, int max_version)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(c->ctx, trust, NULL);
    SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
    if (max_version) {
        SSL_CTX_set_security_level(c->ctx, 0);
        SSL_CTX_set_min_proto_version(c->ctx, TLS1_VERSION);
        SSL_CTX_set_max_proto_version(c->ctx, max_version);
        SSL_CTX_set_cipher_list(c->ctx, "DEFAULT@SECLEVEL=0");
    }
    c->ssl = SSL_new(c->ctx);
    SSL_set_bio(c->ssl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
    SSL_set1_host(c->ssl, "localhost");
    SSL_set_connect_state(c->ssl);
}

static void client_free(client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
}

/* The client's output into the server, `chunk` bytes a feed (0: whole);
 * the server's plaintext is appended to got. Returns the last tls_read
 * result (0, or negative). */
static int to_server(client *c, tls_conn *s, size_t chunk, iy_buf *got)
{
    char b[1 << 16], p[1 << 16];
    int n, rc = 0;
    while ((n = BIO_read(SSL_get_wbio(c->ssl), b, sizeof b)) > 0) {
        for (size_t off = 0; off < (size_t)n;) {
            size_t k = chunk && chunk < (size_t)n - off ? chunk : (size_t)n - off;
            tls_feed(s, b + off, k);
            off += k;
            while ((rc = tls_read(s, p, sizeof p)) > 0) iy_buf_append(got, p, (size_t)rc);
            if (rc < 0) return rc;
        }
    }
    return rc;
}

/* The server's output (plaintext `say` sealed first) into the client. */
static size_t to_client(tls_conn *s, client *c, const char *say, int notify)
{
    iy_buf out = { 0 };
    if (say) iy_buf_append_str(&out, say);
    tls_seal(s, &out, notify);
    size_t n = out.len;
    if (n) BIO_write(SSL_get_rbio(c->ssl), out.data, (int)n);
    iy_buf_free(&out);
    return n;
}

static int handshake(client *c, tls_conn *s, size_t chunk)
{
    iy_buf got = { 0 };
    for (int i = 0; i < 20 && !(SSL_is_init_finished(c->ssl) && tls_established(s)); i++) {
        ERR_clear_error();
        SSL_do_handshake(c->ssl);
        if (to_server(c, s, chunk, &got) < 0) break;
        to_client(s, c, NULL, 0);
    }
    int ok = SSL_is_init_finished(c->ssl) && tls_established(s) && got.len == 0;
    if (!ok) fprintf(stderr, "  handshake failed: client verify %ld, %s; server %s\n", SSL_get_verify_result(c->ssl),
                     ERR_reason_error_string(ERR_peek_last_error()), tls_error(s));
    iy_buf_free(&got);
    return ok;
}

static void test_exchange(tls_server *srv, size_t chunk)
{
    client c;
    client_new(&c, file(0, "a.pem"), 0);
    tls_conn *s = tls_conn_new(srv);
    CHECK(handshake(&c, s, chunk));
    CHECK_EQ(SSL_version(c.ssl), TLS1_3_VERSION);
    CHECK_EQ(SSL_get_verify_result(c.ssl), X509_V_OK);

    /* client -> server, two records, fed in pieces */
    iy_buf got = { 0 };
    SSL_write(c.ssl, "GET /healthz HTTP/1.1\r\n", 23);
    SSL_write(c.ssl, "Host: x\r\n\r\n", 11);
    CHECK_EQ(to_server(&c, s, chunk, &got), 0);
    CHECK_MEM(got.data, got.len, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ(tls_pending(s), 0);

    /* server -> client; a big answer (many records) too */
    char r[64] = { 0 };
    to_client(s, &c, "HTTP/1.1 200 OK\r\n", 0);
    CHECK_EQ(SSL_read(c.ssl, r, sizeof r), 17);
    iy_buf big = { 0 }, back = { 0 };
    for (int i = 0; i < 100000; i++) iy_buf_putc(&big, (char)('a' + i % 26));
    tls_seal(s, &big, 0);
    CHECK(big.len > 100000);
    BIO_write(SSL_get_rbio(c.ssl), big.data, (int)big.len);
    char p[1 << 14];
    int n;
    while ((n = SSL_read(c.ssl, p, sizeof p)) > 0) iy_buf_append(&back, p, (size_t)n);
    CHECK_EQ(back.len, 100000);
    CHECK(back.len == 100000 && back.data[99999] == (char)('a' + 99999 % 26));

    /* the server's close_notify: the client sees a clean end */
    CHECK(to_client(s, &c, NULL, 1) > 0);
    CHECK_EQ(to_client(s, &c, NULL, 1), 0);   /* once */
    CHECK_EQ(SSL_read(c.ssl, p, sizeof p), 0);
    CHECK_EQ(SSL_get_error(c.ssl, 0), SSL_ERROR_ZERO_RETURN);
    /* the client's: tls_read says the session ended */
    SSL_shutdown(c.ssl);
    CHECK_EQ(to_server(&c, s, chunk, &got), IY_EIO);
    iy_buf_free(&got);
    iy_buf_free(&big);
    iy_buf_free(&back);
    tls_conn_free(s);
    client_free(&c);
}

/* Bytes that are not TLS: refused, with an alert to send, and nothing else after. */
static void test_garbage(tls_server *srv, const char *bytes, size_t len, const char *why)
{
    tls_conn *s = tls_conn_new(srv);
    char p[256];
    tls_feed(s, bytes, len);
    CHECK_EQ(tls_read(s, p, sizeof p), IY_EPROTO);
    CHECK(strstr(tls_error(s), why) != NULL);
    if (!strstr(tls_error(s), why)) fprintf(stderr, "  tls_error: %s (wanted %s)\n", tls_error(s), why);
    CHECK_EQ(tls_read(s, p, sizeof p), IY_EPROTO);   /* stays failed */
    iy_buf out = { 0 };
    iy_buf_append_str(&out, "HTTP/1.1 400 Bad Request\r\n\r\n");
    tls_seal(s, &out, 1);
    CHECK(out.len < 16 && (out.len == 0 || (unsigned char)out.data[0] == 0x15));   /* an alert at most */
    iy_buf_free(&out);
    tls_conn_free(s);
}

static void test_old_versions(tls_server *srv)
{
    client c;
    client_new(&c, file(0, "a.pem"), TLS1_1_VERSION);
    tls_conn *s = tls_conn_new(srv);
    iy_buf got = { 0 };
    SSL_do_handshake(c.ssl);
    CHECK_EQ(to_server(&c, s, 0, &got), IY_EPROTO);
    CHECK(strstr(tls_error(s), "protocol") != NULL);
    to_client(s, &c, NULL, 0);
    CHECK(SSL_do_handshake(c.ssl) <= 0);
    CHECK(!SSL_is_init_finished(c.ssl));
    iy_buf_free(&got);
    tls_conn_free(s);
    client_free(&c);
}

/* Plaintext queued before the handshake finished is dropped, never sent. */
static void test_early_plaintext(tls_server *srv)
{
    tls_conn *s = tls_conn_new(srv);
    iy_buf out = { 0 };
    iy_buf_append_str(&out, "SECRET");
    tls_seal(s, &out, 1);
    CHECK_EQ(out.len, 0);
    iy_buf_free(&out);
    tls_conn_free(s);
}

static const char *peer_cn(client *c, char *cn, size_t n)
{
    X509 *x = SSL_get1_peer_certificate(c->ssl);
    cn[0] = '\0';
    if (x) X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)n);
    X509_free(x);
    return cn;
}

static void test_reload(void)
{
    char err[512], cn[64];
    tls_server *srv;
    sh("cp a.pem live.pem && cp a.key live.key && cat a.pem b.pem > both.pem");
    CHECK_EQ(tls_server_new(file(1, "live.pem"), file(2, "live.key"), &srv, err, sizeof err), 0);
    client old;
    client_new(&old, file(3, "both.pem"), 0);
    tls_conn *so = tls_conn_new(srv);
    CHECK(handshake(&old, so, 0));
    CHECK(!strcmp(peer_cn(&old, cn, sizeof cn), "a"));

    sh("cp b.pem live.pem && cp b.key live.key");
    CHECK_EQ(tls_server_reload(srv, err, sizeof err), 0);
    client nu;
    client_new(&nu, file(3, "both.pem"), 0);
    tls_conn *sn = tls_conn_new(srv);
    CHECK(handshake(&nu, sn, 0));
    CHECK(!strcmp(peer_cn(&nu, cn, sizeof cn), "b"));

    /* the old connection still talks */
    iy_buf got = { 0 };
    SSL_write(old.ssl, "still here", 10);
    to_server(&old, so, 0, &got);
    CHECK_MEM(got.data, got.len, "still here");

    /* a key that is not the certificate's, a missing file: refused, b stays */
    sh("cp a.key live.key");
    CHECK_EQ(tls_server_reload(srv, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "does not match") != NULL);
    sh("rm live.pem");
    CHECK_EQ(tls_server_reload(srv, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "cannot read the certificate") != NULL);
    client again;
    client_new(&again, file(3, "both.pem"), 0);
    tls_conn *sa = tls_conn_new(srv);
    CHECK(handshake(&again, sa, 0));
    CHECK(!strcmp(peer_cn(&again, cn, sizeof cn), "b"));

    iy_buf_free(&got);
    tls_conn_free(so);
    tls_conn_free(sn);
    tls_conn_free(sa);
    client_free(&old);
    client_free(&nu);
    client_free(&again);
    tls_server_free(srv);
}

static void test_bad_files(void)
{
    char err[512];
    tls_server *s = NULL;
    CHECK_EQ(tls_server_new(file(1, "nope.pem"), file(2, "a.key"), &s, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "cannot read the certificate") && strstr(err, "nope.pem") && strstr(err, "No such file"));
    CHECK_EQ(tls_server_new(file(1, "a.pem"), file(2, "nope.key"), &s, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "cannot read the private key") != NULL);
    CHECK_EQ(tls_server_new(file(1, "junk.pem"), file(2, "a.key"), &s, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "no PEM certificate") != NULL);
    CHECK_EQ(tls_server_new(file(1, "a.pem"), file(2, "junk.pem"), &s, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "no usable PEM private key") != NULL);
    CHECK_EQ(tls_server_new(file(1, "a.pem"), file(2, "b.key"), &s, err, sizeof err), IY_EINVAL);
    CHECK(strstr(err, "does not match") != NULL);
    CHECK(s == NULL);
    tls_server_free(NULL);
    tls_conn_free(NULL);
}

int main(void)
{
    if (make_certs() != 0) {
        fprintf(stderr, "test_tls: cannot make certificates with the openssl CLI in %s\n", dir);
        return 1;
    }
    char err[512];
    tls_server *srv = NULL;
    CHECK_EQ(tls_server_new(file(0, "a.pem"), file(1, "a.key"), &srv, err, sizeof err), 0);
    if (srv) {
        test_exchange(srv, 0);
        test_exchange(srv, 1);
        test_exchange(srv, 7);
#define GARBAGE(lit, why) test_garbage(srv, lit, sizeof lit - 1, why)
        GARBAGE("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http request");
        GARBAGE("\x16\x03\x01\x00\x04\x01\x00\x00\x00", "length");   /* an empty ClientHello */
        GARBAGE("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", "");
        test_old_versions(srv);
        test_early_plaintext(srv);
        tls_server_free(srv);
    }
    test_reload();
    test_bad_files();
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) fprintf(stderr, "test_tls: could not remove %s\n", dir);
    return T_DONE("tls");
}
