/* disco.c — service discovery for iyagi-bench: the GET /v1/discovery
 * request, its answer parsed into a node table, and the weighted round robin
 * that spreads connections over the nodes by spare capacity.
 *
 * The answer (shared/PROTOCOL.md, "Running a cluster") is
 *   {"ws_url":"ws://...","node":"n1","nodes":[{"node","ws_url","connections","capacity"},...]}
 * and a single node answers without `nodes`. It is read with a small JSON
 * walker (objects, arrays, strings with escapes, numbers, literals) that does
 * not care about key order; unknown keys are skipped. Nothing here does I/O
 * but disco_fetch(), the coordinator's blocking one-off; the workers drive
 * the same request and parser from their epoll loops. */
#include "bench.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- a JSON walker over [s, e) ----------------------------------------- */

static const char *ws(const char *s, const char *e)
{
    while (s < e && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')) s++;
    return s;
}

/* s at an opening quote: returns just past the closing one, or NULL. */
static const char *skip_string(const char *s, const char *e)
{
    for (s++; s < e; s++) {
        if (*s == '\\') s++;
        else if (*s == '"') return s + 1;
    }
    return NULL;
}

/* s at a value: returns just past it, or NULL if it is not well formed. */
static const char *skip_value(const char *s, const char *e)
{
    if (s >= e) return NULL;
    if (*s == '"') return skip_string(s, e);
    if (*s == '{' || *s == '[') {
        int depth = 0;
        while (s < e) {
            if (*s == '"') {
                s = skip_string(s, e);
                if (!s) return NULL;
                continue;
            }
            if (*s == '{' || *s == '[') depth++;
            else if (*s == '}' || *s == ']') {
                if (--depth == 0) return s + 1;
            }
            s++;
        }
        return NULL;
    }
    const char *b = s;
    while (s < e && *s != ',' && *s != '}' && *s != ']' && *s != ' ' && *s != '\r' && *s != '\n' && *s != '\t') s++;
    return s > b ? s : NULL;
}

/* Copies the string value at s (a quote) into out, unescaped (\uXXXX past
 * ASCII becomes '?'). 0, or -1 if it is not a string or does not fit. */
static int get_string(const char *s, const char *e, char *out, size_t cap)
{
    if (s >= e || *s != '"') return -1;
    const char *end = skip_string(s, e);
    if (!end) return -1;
    size_t n = 0;
    for (s++; s < end - 1; s++) {
        char c = *s;
        if (c == '\\') {
            c = *++s;
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'r') c = '\r';
            else if (c == 'b') c = '\b';
            else if (c == 'f') c = '\f';
            else if (c == 'u') {
                unsigned v = 0;
                if (end - 1 - s < 5 || sscanf(s + 1, "%4x", &v) != 1) return -1;
                c = v < 0x80 ? (char)v : '?';
                s += 4;
            }
        }
        if (n + 1 >= cap) return -1;
        out[n++] = c;
    }
    out[n] = 0;
    return 0;
}

static int64_t get_int(const char *s, const char *e)
{
    char tmp[32];
    size_t n = (size_t)(e - s) < sizeof tmp - 1 ? (size_t)(e - s) : sizeof tmp - 1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    char *end;
    long long v = strtoll(tmp, &end, 10);
    return end == tmp ? -1 : (int64_t)v;
}

/* Calls fn(key, key_len, value, value_end, ctx) for each member of the
 * object at s. 0, or -1 if the object is not well formed. */
typedef void member_fn(const char *k, size_t kn, const char *v, const char *ve, void *ctx);

static int each_member(const char *s, const char *e, member_fn *fn, void *ctx)
{
    s = ws(s, e);
    if (s >= e || *s != '{') return -1;
    s = ws(s + 1, e);
    if (s < e && *s == '}') return 0;
    while (s < e) {
        if (*s != '"') return -1;
        const char *ke = skip_string(s, e);
        if (!ke) return -1;
        const char *v = ws(ke, e);
        if (v >= e || *v != ':') return -1;
        v = ws(v + 1, e);
        const char *ve = skip_value(v, e);
        if (!ve) return -1;
        fn(s + 1, (size_t)(ke - s - 2), v, ve, ctx);
        s = ws(ve, e);
        if (s < e && *s == '}') return 0;
        if (s >= e || *s != ',') return -1;
        s = ws(s + 1, e);
    }
    return -1;
}

#define KEY_IS(lit) (kn == sizeof(lit) - 1 && !memcmp(k, lit, kn))

typedef struct nodectx {
    bnode nd;
    int has_url;
} nodectx;

static void node_member(const char *k, size_t kn, const char *v, const char *ve, void *ctx)
{
    nodectx *c = ctx;
    if (KEY_IS("node")) {
        if (get_string(v, ve, c->nd.name, sizeof c->nd.name) != 0) c->nd.name[0] = 0;
    } else if (KEY_IS("ws_url")) {
        char url[sizeof c->nd.url];
        if (get_string(v, ve, url, sizeof url) == 0 && disco_parse_url(url, strlen(url), &c->nd) == 0)
            c->has_url = 1;
    } else if (KEY_IS("connections")) {
        c->nd.connections = get_int(v, ve);
    } else if (KEY_IS("capacity")) {
        c->nd.capacity = get_int(v, ve);
    }
}

static void node_defaults(bnode *nd)
{
    memset(nd, 0, sizeof *nd);
    nd->connections = nd->capacity = -1;
}

/* The node's name: `node`, else the URL's host:port. */
static void node_name(bnode *nd)
{
    if (!nd->name[0]) snprintf(nd->name, sizeof nd->name, "%s", nd->host_hdr);
}

typedef struct topctx {
    bdisco *d;
    nodectx top;                /* the answer's own ws_url and node */
    int bad;
} topctx;

static void top_member(const char *k, size_t kn, const char *v, const char *ve, void *ctx)
{
    topctx *t = ctx;
    if (KEY_IS("ws_url") || KEY_IS("node")) {
        node_member(k, kn, v, ve, &t->top);
        return;
    }
    if (!KEY_IS("nodes")) return;
    const char *s = ws(v, ve), *e = ve;
    if (s >= e || *s != '[') {
        t->bad = 1;
        return;
    }
    t->d->listed = 1;
    s = ws(s + 1, e);
    while (s < e && *s != ']') {
        const char *oe = skip_value(s, e);
        if (!oe) {
            t->bad = 1;
            return;
        }
        nodectx n;
        node_defaults(&n.nd);
        n.has_url = 0;
        if (*s == '{' && each_member(s, oe, node_member, &n) == 0 && n.has_url &&
            t->d->n < BENCH_MAX_NODES) {
            node_name(&n.nd);
            t->d->node[t->d->n++] = n.nd;
        }
        s = ws(oe, e);
        if (s < e && *s == ',') s = ws(s + 1, e);
    }
}

#undef KEY_IS

static int parse_body(const char *s, size_t n, bdisco *d)
{
    memset(d, 0, sizeof *d);
    d->pick = -1;
    topctx t = { .d = d };
    node_defaults(&t.top.nd);
    if (each_member(s, s + n, top_member, &t) != 0 || t.bad || !t.top.has_url) return -1;
    node_name(&t.top.nd);
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->node[i].url, t.top.nd.url)) d->pick = i;
    if (!d->listed || d->n == 0) {
        /* a single node: its ws_url is the whole table */
        d->n = 1;
        d->node[0] = t.top.nd;
        d->pick = 0;
    }
    return 0;
}

/* ---- URLs, the request, the response ----------------------------------- */

int disco_parse_url(const char *s, size_t n, bnode *nd)
{
    if (n < 6 || n >= sizeof nd->url || strncasecmp(s, "ws://", 5) != 0) return -1;
    memcpy(nd->url, s, n);
    nd->url[n] = 0;
    const char *h = s + 5, *e = s + n;
    const char *slash = memchr(h, '/', (size_t)(e - h));
    const char *he = slash ? slash : e;
    const char *colon = memchr(h, ':', (size_t)(he - h));
    size_t hl = (size_t)((colon ? colon : he) - h);
    char host[64];
    if (hl == 0 || hl >= sizeof host || (size_t)(he - h) >= sizeof nd->host_hdr) return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    nd->port = 80;
    if (colon) {
        char *pe;
        long port = strtol(colon + 1, &pe, 10);
        if (pe != he || port <= 0 || port > 65535) return -1;
        nd->port = (int)port;
    }
    memcpy(nd->host_hdr, h, (size_t)(he - h));
    nd->host_hdr[he - h] = 0;
    size_t pl = slash ? (size_t)(e - slash) : 0;
    if (pl >= sizeof nd->path) return -1;
    if (pl) {
        memcpy(nd->path, slash, pl);
        nd->path[pl] = 0;
    } else {
        snprintf(nd->path, sizeof nd->path, "/v1/ws");
    }
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) == 1) {
        nd->addr = ntohl(a.s_addr);
        return 0;
    }
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) return -1;
    nd->addr = ntohl(((struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr);
    freeaddrinfo(res);
    return 0;
}

void disco_request(iy_buf *b, const char *host, int port)
{
    iy_buf_appendf(b, "GET /v1/discovery HTTP/1.1\r\nHost: %s:%d\r\nAccept: application/json\r\n"
                      "Connection: close\r\n\r\n", host, port);
}

int disco_parse_http(const char *s, size_t n, int eof, bdisco *d)
{
    const char *he = memmem(s, n, "\r\n\r\n", 4);
    if (!he) return eof ? -1 : 1;
    size_t hl = (size_t)(he - s) + 4;
    if (hl < 12 || memcmp(s, "HTTP/1.", 7) != 0 || memcmp(s + 8, " 200", 4) != 0) return -1;
    long cl = -1;
    for (const char *l = s; l && l < he; ) {
        const char *nl = memmem(l, (size_t)(he + 2 - l), "\r\n", 2);
        if (!nl) break;
        l = nl + 2;
        if ((size_t)(he - l) >= 15 && !strncasecmp(l, "content-length:", 15)) cl = strtol(l + 15, NULL, 10);
        else if ((size_t)(he - l) >= 18 && !strncasecmp(l, "transfer-encoding:", 18)) return -1; /* chunked: not spoken */
    }
    size_t body = n - hl;
    if (cl >= 0) {
        if (body < (size_t)cl) return eof ? -1 : 1;
        body = (size_t)cl;
    } else if (!eof) {
        return 1;
    }
    return parse_body(s + hl, body, d) == 0 ? 0 : -1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Waits for ev on fd until the deadline: 0 when ready, -1 on timeout. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t t = now_ms();
        if (t >= deadline) return -1;
        struct pollfd pf = { .fd = fd, .events = ev };
        int r = poll(&pf, 1, (int)(deadline - t));
        if (r > 0) return 0;
        if (r < 0 && errno != EINTR) return -1;
    }
}

int disco_fetch(const char *host, int port, int timeout_ms, bdisco *d)
{
    bnode entry;
    char url[128];
    snprintf(url, sizeof url, "ws://%s:%d/", host, port);
    if (disco_parse_url(url, strlen(url), &entry) != 0) return -1;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    iy_buf req = { 0 }, in = { 0 };
    int rc = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) goto out;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(entry.addr) };
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) goto out;
    if (wait_fd(fd, POLLOUT, deadline) != 0) goto out;
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) goto out;
    disco_request(&req, host, port);
    for (size_t off = 0; off < req.len; ) {
        ssize_t w = write(fd, req.data + off, req.len - off);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && errno == EAGAIN) {
            if (wait_fd(fd, POLLOUT, deadline) != 0) goto out;
        } else goto out;
    }
    for (;;) {
        char buf[4096];
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
            iy_buf_append(&in, buf, (size_t)r);
            int pr = disco_parse_http(in.data, in.len, 0, d);
            if (pr <= 0) {
                rc = pr;
                goto out;
            }
            if (in.len > (1u << 20)) goto out;
            continue;
        }
        if (r == 0) {
            rc = disco_parse_http(in.data, in.len, 1, d) == 0 ? 0 : -1;
            goto out;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN || wait_fd(fd, POLLIN, deadline) != 0) goto out;
    }
out:
    if (fd >= 0) close(fd);
    iy_buf_free(&in);
    iy_buf_free(&req);
    return rc;
}

const char *bench_json_skip(const char *s, const char *e)
{
    return skip_value(s, e);
}

/* ---- spreading ------------------------------------------------------------ */

void disco_weights(const bdisco *d, double *weight)
{
    int figures = 1;
    for (int i = 0; i < d->n; i++)
        if (d->node[i].capacity <= 0 || d->node[i].connections < 0) figures = 0;
    for (int i = 0; i < d->n; i++) {
        double spare = (double)(d->node[i].capacity - d->node[i].connections);
        weight[i] = figures ? (spare > 0 ? spare : 0) : 1;
    }
}

int disco_wrr_pick(double *cur, const double *weight, const int *ok, int n)
{
    double total = 0;
    int any = 0;
    for (int i = 0; i < n; i++)
        if (ok[i]) {
            any = 1;
            total += weight[i];
        }
    if (!any) return -1;
    int equal = total <= 0;
    if (equal) total = 0;
    int best = -1;
    for (int i = 0; i < n; i++) {
        if (!ok[i]) continue;
        double wi = equal ? 1 : weight[i];
        if (equal) total += 1;
        cur[i] += wi;
        if (best < 0 || cur[i] > cur[best]) best = i;
    }
    cur[best] -= total;
    return best;
}
