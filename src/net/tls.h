/* tls.h — TLS for the transport, OpenSSL 3 over memory BIOs: the socket's
 * bytes never meet OpenSSL's I/O layer. conn.c reads ciphertext from the
 * socket and feeds it here, gets plaintext back for the HTTP/WebSocket
 * codecs, and before each write seals its queued plaintext into the
 * ciphertext that uv_write sends. Nothing here blocks or touches a socket;
 * the handshake advances with each feed, like everything else.
 *
 *   socket ─read─► tls_feed ─► [read BIO] ─► SSL ─► tls_read ─► codecs
 *   codecs ─► c->out (plaintext) ─► tls_seal ─► SSL ─► [write BIO] ─► c->out (ciphertext) ─► uv_write
 *
 * The server context (tls_server) is shared by the I/O threads: it holds the
 * current SSL_CTX under a mutex; a new connection takes a reference to it
 * (SSL_new), so tls_server_reload() swaps in a new certificate for new
 * connections while the open ones keep the context they began with.
 *
 * Per connection: one SSL and its two memory BIOs. SSL_MODE_RELEASE_BUFFERS
 * frees OpenSSL's record buffers while idle and an emptied BIO gives its
 * buffer back, so an idle TLS connection costs the SSL state only (measured
 * in docs/BENCHMARKS.md). A connection without TLS has a NULL tls_conn and
 * pays nothing else. */
#ifndef IY_TLS_H
#define IY_TLS_H
#include <stddef.h>
#include "../base/buf.h"

typedef struct tls_server tls_server;
typedef struct tls_conn tls_conn;

/* Loads cert (a PEM chain, leaf first) and key (PEM) into a server context:
 * TLS 1.2 and 1.3 only, ECDHE with AEAD ciphers for 1.2, the server's cipher
 * order, no compression, no renegotiation, session tickets. Returns 0 and
 * *out, or IY_EINVAL with why (a file that cannot be read, a key that is
 * not the certificate's) in err (always terminated). */
int tls_server_new(const char *cert, const char *key, tls_server **out, char *err, size_t errn);

/* Builds a new context from the same files and makes it the one new
 * connections get; open connections keep theirs. Any thread. Returns 0, or
 * IY_EINVAL with why in err: the old context stays. */
int tls_server_reload(tls_server *s, char *err, size_t errn);

void tls_server_free(tls_server *s);   /* after every connection is gone; NULL ok */

/* A connection's TLS state on the current context (server side). Aborts on
 * out-of-memory like iy_malloc. */
tls_conn *tls_conn_new(tls_server *s);
void tls_conn_free(tls_conn *t);       /* NULL ok */

/* Ciphertext from the socket (copied: data may be reused at once). 0. */
int tls_feed(tls_conn *t, const char *data, size_t len);

/* Plaintext decrypted so far, into buf (cap bytes): the number of bytes
 * (> 0); 0 when more ciphertext is needed (the handshake may have queued
 * output: tls_pending); IY_EPROTO when the peer broke the protocol or the
 * handshake failed (why: tls_error), IY_EIO when the peer closed the
 * session (close_notify). After a negative return, only tls_seal (to send
 * the alert) and tls_conn_free may follow. */
int tls_read(tls_conn *t, char *buf, size_t cap);

/* Encrypts buf's plaintext (when the handshake is done: before that it is
 * dropped — nothing is said to a peer that has not finished its handshake)
 * and leaves in buf every byte of ciphertext waiting: records, handshake
 * messages, alerts; with notify, a close_notify after them (once). 0. */
int tls_seal(tls_conn *t, iy_buf *buf, int notify);

size_t tls_pending(const tls_conn *t);         /* ciphertext waiting for tls_seal */
int tls_established(const tls_conn *t);        /* 1 once the handshake is complete */
/* Why the last tls_read failed: OpenSSL's reason ("wrong version number",
 * "http request", ...), for logs. Never NULL. */
const char *tls_error(const tls_conn *t);

#endif
