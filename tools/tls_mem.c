/* tls_mem.c — what OpenSSL keeps per idle server connection of net/tls.c,
 * by allocation site: N handshakes (TLS 1.3; any 4th argument: TLS 1.2)
 * against an in-memory client, one small message each way, the client
 * freed, the server side kept; OpenSSL's allocations are tracked through
 * CRYPTO_set_mem_functions (file:line of each live block). A measuring
 * tool for docs/BENCHMARKS.md, not part of any build:
 *
 *   make && gcc -std=c11 -D_GNU_SOURCE -O2 -Isrc tools/tls_mem.c build/rel/net/tls.o \
 *       build/rel/base/buf.o build/rel/base/alloc.o -o build/tls_mem -lssl -lcrypto
 *   build/tls_mem 1000 CERT.pem KEY.pem
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include "net/tls.h"
#include "base/buf.h"
#define CAP (1u << 22)
typedef struct { void *p; size_t n; const char *f; int l; } ent;
static ent *tab;

static size_t h(void *p) { return ((uintptr_t)p >> 4) * 11400714819323198485ull >> 42; }
static void put(void *p, size_t n, const char *f, int l) {
    if (!tab) tab = calloc(CAP, sizeof *tab);
    size_t i = h(p) & (CAP - 1);
    while (tab[i].p && tab[i].p != (void *)1) i = (i + 1) & (CAP - 1);
    tab[i] = (ent){ p, n, f, l };
}
static void del(void *p) {
    if (!tab || !p) return;
    size_t i = h(p) & (CAP - 1);
    while (tab[i].p) { if (tab[i].p == p) { tab[i].p = (void *)1; return; } i = (i + 1) & (CAP - 1); }
}
static void *m(size_t n, const char *f, int l) { void *p = malloc(n); if (p) put(p, n, f, l); return p; }
static void *r(void *o, size_t n, const char *f, int l) { del(o); void *p = realloc(o, n); if (p) put(p, n, f, l); return p; }
static void fr(void *p, const char *f, int l) { (void)f; (void)l; del(p); free(p); }
void track_init(void) { CRYPTO_set_mem_functions(m, r, fr); }
typedef struct { const char *f; int l; size_t bytes, count; } site;
void track_report(int N) {
    static site s[4096]; int ns = 0;
    for (size_t i = 0; i < CAP; i++) {
        ent *e = &tab[i];
        if (!e->p || e->p == (void *)1) continue;
        int k;
        for (k = 0; k < ns; k++) if (s[k].l == e->l && s[k].f == e->f) break;
        if (k == ns) { if (ns == 4096) continue; s[ns++] = (site){ e->f, e->l, 0, 0 }; }
        s[k].bytes += e->n; s[k].count++;
    }
    for (int pass = 0; pass < 25; pass++) {
        int best = -1;
        for (int k = 0; k < ns; k++) if (s[k].bytes && (best < 0 || s[k].bytes > s[best].bytes)) best = k;
        if (best < 0) break;
        if (s[best].count >= (size_t)N) printf("%8.0f B/conn %6zu allocs  %s:%d\n", (double)s[best].bytes / N, s[best].count, s[best].f, s[best].l);
        s[best].bytes = 0;
    }
}

static void pump_client_to_server(SSL *cl, tls_conn *sv) {
    char b[65536]; int n;
    while ((n = BIO_read(SSL_get_wbio(cl), b, sizeof b)) > 0) tls_feed(sv, b, n);
}
static void pump_server_to_client(tls_conn *sv, SSL *cl) {
    iy_buf out = {0};
    tls_seal(sv, &out, 0);
    if (out.len) BIO_write(SSL_get_rbio(cl), out.data, out.len);
    iy_buf_free(&out);
}
int main(int argc, char **argv) {
    track_init();
    int N = argc > 1 ? atoi(argv[1]) : 1000;
    tls_server *s; char err[256];
    if (tls_server_new(argv[2], argv[3], &s, err, sizeof err)) { puts(err); return 1; }
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    if (argc > 4) SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
    tls_conn **svs = calloc(N, sizeof *svs);
    char buf[65536];
    /* warm */
    for (int round = 0; round < 2; round++) {
        struct mallinfo2 a = mallinfo2();
        for (int i = 0; i < N; i++) {
            tls_conn *sv = tls_conn_new(s);
            SSL *cl = SSL_new(cctx);
            SSL_set_bio(cl, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
            SSL_set_connect_state(cl);
            for (int k = 0; k < 10; k++) {
                SSL_do_handshake(cl);
                pump_client_to_server(cl, sv);
                int r;
                while ((r = tls_read(sv, buf, sizeof buf)) > 0) ;
                if (r < 0) { printf("server error %s\n", tls_error(sv)); return 1; }
                pump_server_to_client(sv, cl);
                if (SSL_is_init_finished(cl) && tls_established(sv)) break;
            }
            /* one small message each way, as an idle WebSocket's last exchange */
            SSL_write(cl, "{\"op\":\"hb\"}0123456789012345678901234567890123456789", 50);
            pump_client_to_server(cl, sv);
            while (tls_read(sv, buf, sizeof buf) > 0) ;
            iy_buf o = {0}; iy_buf_append(&o, "{\"op\":\"hb\"}", 11); tls_seal(sv, &o, 0);
            BIO_write(SSL_get_rbio(cl), o.data, o.len); iy_buf_free(&o);
            SSL_read(cl, buf, sizeof buf);
            SSL_free(cl);
            if (round == 0) tls_conn_free(sv); else svs[i] = sv;
        }
        struct mallinfo2 b = mallinfo2();
        if (round == 1) track_report(N);
        printf("round %d: in use %+.0f bytes per connection (arena %+.0f)\n", round,
               ((double)b.uordblks - a.uordblks) / N, ((double)b.arena - a.arena) / N);
    }
    return 0;
}
