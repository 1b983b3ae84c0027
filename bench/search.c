/* search.c — iyagi-bench search: the latency of GET /v1/search.
 *
 *   iyagi-bench search --users FILE --port P [--count C] [--duration S] [--limit L]
 *                      [--user N] [--label TEXT]
 *
 * The users file comes from `iyagid admin create-users ... --messages M`
 * (src/server/admin_fill.c): its "query CLASS TEXT" lines name queries by
 * how common they are in the made-up history, and its first user is a
 * member of every group, so its search runs over all M messages (--user N
 * searches as the file's N-th user instead: one group's messages). C
 * client threads (default 2), each on one keep-alive connection, ask the
 * queries in turn for S seconds (after one warm-up pass that is not
 * counted); the table and a JSON line give per class the number asked,
 * the results per answer and the latency p50/p90/p99/max. Any answer but
 * 200 fails the run. */
#include "bench.h"
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define QMAX 16

typedef struct squery {
    char cls[32];
    char text[256];
    char path[1024];             /* the request's path and query string */
} squery;

typedef struct sshared {
    char host[64];
    int port;
    char token[64];
    squery q[QMAX];
    int nq;
    int limit;
    uint64_t until_ns;
} sshared;

typedef struct sthread {
    const sshared *sh;
    int id;
    hist h[QMAX];
    uint64_t results[QMAX];
    int failed;
    char why[256];
} sthread;

static void pct_encode(char *out, size_t cap, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s && n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
}

static int dial(const sshared *sh)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)sh->port) };
    inet_pton(AF_INET, sh->host, &a.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One request and its whole answer (Content-Length): the status, or -1. */
static int ask(int fd, const sshared *sh, const squery *q, char *buf, size_t cap, size_t *body_at, size_t *len)
{
    char req[2048];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n",
                     q->path, sh->host, sh->token);
    if (bench_write_full(fd, req, (size_t)n)) return -1;
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        char *cl = strcasestr(buf, "content-length:");
        if (!cl || cl > end) return -1;
        size_t want = (size_t)(end + 4 - buf) + strtoul(cl + 15, NULL, 10);
        if (want >= cap) return -1;
        if (got < want) continue;
        *body_at = (size_t)(end + 4 - buf);
        *len = want - *body_at;
        return atoi(buf + 9);
    }
}

/* The results in an answer: its "message" keys. */
static uint64_t count_results(const char *b)
{
    uint64_t n = 0;
    for (const char *p = b; (p = strstr(p, "{\"message\":")); p++) n++;
    return n;
}

static void *run(void *arg)
{
    sthread *t = arg;
    const sshared *sh = t->sh;
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    int fd = dial(sh);
    if (fd < 0) {
        t->failed = 1;
        snprintf(t->why, sizeof t->why, "cannot connect to %s:%d", sh->host, sh->port);
        free(buf);
        return NULL;
    }
    for (int pass = 0; !t->failed; pass++) {
        for (int i = 0; i < sh->nq && !t->failed; i++) {
            int k = (i + t->id) % sh->nq;
            size_t at, len;
            uint64_t t0 = bench_now_ns();
            int st = ask(fd, sh, &sh->q[k], buf, cap, &at, &len);
            uint64_t dt = bench_now_ns() - t0;
            if (st != 200) {
                t->failed = 1;
                snprintf(t->why, sizeof t->why, "%s: status %d %.120s", sh->q[k].cls, st, st > 0 ? buf + at : "");
                break;
            }
            if (pass == 0) continue;   /* warm-up */
            hist_add(&t->h[k], dt);
            t->results[k] += count_results(buf + at);
        }
        if (bench_now_ns() > sh->until_ns && pass > 0) break;
    }
    close(fd);
    free(buf);
    return NULL;
}

int search_main(int argc, char **argv)
{
    sshared *sh = calloc(1, sizeof *sh);
    snprintf(sh->host, sizeof sh->host, "127.0.0.1");
    const char *users = NULL, *label = "";
    int count = 2, duration = 10, user = 0;
    sh->limit = 20;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--users")) users = v;
        else if (!strcmp(a, "--port")) sh->port = atoi(v);
        else if (!strcmp(a, "--host")) snprintf(sh->host, sizeof sh->host, "%s", v);
        else if (!strcmp(a, "--count")) count = atoi(v);
        else if (!strcmp(a, "--duration")) duration = atoi(v);
        else if (!strcmp(a, "--limit")) sh->limit = atoi(v);
        else if (!strcmp(a, "--user")) user = atoi(v);
        else if (!strcmp(a, "--label")) label = v;
        else {
            fprintf(stderr, "iyagi-bench search: unknown option %s\n", a);
            return 2;
        }
    }
    if (!users || sh->port <= 0 || count < 1 || count > 64 || duration < 1 || sh->limit < 1 || sh->limit > 100) {
        fprintf(stderr, "usage: iyagi-bench search --users FILE --port P [--count 1..64] [--duration S]"
                        " [--limit 1..100] [--user N] [--label TEXT]\n");
        return 2;
    }
    FILE *f = fopen(users, "r");
    if (!f) {
        fprintf(stderr, "iyagi-bench search: cannot read %s\n", users);
        return 2;
    }
    char line[4096];
    int nusers = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (!strncmp(line, "query ", 6) && sh->nq < QMAX) {
            squery *q = &sh->q[sh->nq++];
            char *sp = strchr(line + 6, ' ');
            if (!sp) continue;
            snprintf(q->cls, sizeof q->cls, "%.*s", (int)(sp - line - 6), line + 6);
            snprintf(q->text, sizeof q->text, "%s", sp + 1);
            char enc[768];
            pct_encode(enc, sizeof enc, q->text);
            snprintf(q->path, sizeof q->path, "/v1/search?q=%s&limit=%d", enc, sh->limit);
        } else if (strncmp(line, "group ", 6) != 0 && strncmp(line, "query ", 6) != 0) {
            if (nusers++ == user) sscanf(line, "%*s %*s %63s", sh->token);
        }
    }
    fclose(f);
    if (!sh->nq || !sh->token[0]) {
        fprintf(stderr, "iyagi-bench search: %s has no query lines or no user %d"
                        " (make it with iyagid admin create-users ... --messages N)\n", users, user);
        return 2;
    }
    sthread *t = calloc((size_t)count, sizeof *t);
    pthread_t *th = calloc((size_t)count, sizeof *th);
    uint64_t t0 = bench_now_ns();
    sh->until_ns = t0 + (uint64_t)duration * 1000000000ull;
    for (int i = 0; i < count; i++) {
        t[i].sh = sh;
        t[i].id = i;
        for (int k = 0; k < QMAX; k++) hist_init(&t[i].h[k]);
        pthread_create(&th[i], NULL, run, &t[i]);
    }
    int failed = 0;
    for (int i = 0; i < count; i++) {
        pthread_join(th[i], NULL);
        if (t[i].failed) {
            fprintf(stderr, "iyagi-bench search: %s\n", t[i].why);
            failed = 1;
        }
    }
    double secs = (double)(bench_now_ns() - t0) / 1e9;
    hist all;
    hist_init(&all);
    printf("search %s: %d clients, user %d, limit %d, %.1f s\n", label, count, user, sh->limit, secs);
    printf("json:{\"bench\":\"iyagi\",\"scenario\":\"search\",\"label\":\"%s\",\"clients\":%d,\"user\":%d", label,
           count, user);
    for (int k = 0; k < sh->nq; k++) {
        hist h;
        uint64_t res = 0;
        hist_init(&h);
        for (int i = 0; i < count; i++) {
            hist_merge(&h, &t[i].h[k]);
            res += t[i].results[k];
        }
        hist_merge(&all, &h);
        printf(",\"%s\":{\"q\":\"%s\",\"n\":%llu,\"results\":%.1f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"max_ms\":%.3f}", sh->q[k].cls, sh->q[k].text, (unsigned long long)h.n,
               h.n ? (double)res / (double)h.n : 0.0, hist_quantile(&h, 0.5) / 1e6, hist_quantile(&h, 0.9) / 1e6,
               hist_quantile(&h, 0.99) / 1e6, h.max / 1e6);
        fprintf(stderr, "  %-14s %-12s n=%-6llu results %5.1f  p50 %8.3f  p90 %8.3f  p99 %8.3f  max %8.3f ms\n",
                sh->q[k].cls, sh->q[k].text, (unsigned long long)h.n, h.n ? (double)res / (double)h.n : 0.0,
                hist_quantile(&h, 0.5) / 1e6, hist_quantile(&h, 0.9) / 1e6, hist_quantile(&h, 0.99) / 1e6,
                h.max / 1e6);
    }
    printf(",\"all\":{\"n\":%llu,\"qps\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f}}\n", (unsigned long long)all.n,
           (double)all.n / secs, hist_quantile(&all, 0.5) / 1e6, hist_quantile(&all, 0.99) / 1e6);
    fprintf(stderr, "  %-27s n=%-6llu %.1f queries/s  p50 %8.3f  p99 %8.3f ms\n", "all",
            (unsigned long long)all.n, (double)all.n / secs, hist_quantile(&all, 0.5) / 1e6,
            hist_quantile(&all, 0.99) / 1e6);
    free(t);
    free(th);
    free(sh);
    return failed;
}
