/* iothread.c — one I/O thread: its loop, its listening socket, its inbox.
 *
 * Each thread binds its own listening socket with SO_REUSEPORT, so the
 * kernel spreads new connections over the threads and no accept lock is
 * shared. Other threads reach this one only through the inbox (a mutex-
 * guarded FIFO plus uv_async_send); everything else here is owned by the
 * thread. Output is flushed by a prepare handle, i.e. once per loop turn
 * right before the loop would sleep, so frames queued for one socket during
 * a turn leave in one write. */
#include "net.h"
#include "../base/metrics.h"
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t mono_ns(void) { return uv_hrtime(); }

/* An item in an I/O thread's inbox: a task or a control word. */
typedef struct inbox_item {
    struct inbox_item *next;
    iothread_fn fn;
    void *arg;
    int ctl;                    /* THREAD_STOP_ACCEPT, THREAD_EXIT (fn NULL) */
} inbox_item;

/* The wake-up is owed by whoever makes the inbox non-empty: items pushed
 * behind it are taken by the same on_wake (it takes the whole list), so a
 * storage round that answers 500 sends is one wake-up, not 500 calls that
 * each may write the eventfd again once the loop has begun draining. */
static void push(iothread *t, inbox_item *it)
{
    pthread_mutex_lock(&t->mu);
    int was_empty = t->head == NULL;
    if (t->tail) t->tail->next = it;
    else t->head = it;
    t->tail = it;
    pthread_mutex_unlock(&t->mu);
    if (was_empty) uv_async_send(&t->wake);
}

void iothread_post(iothread *t, iothread_fn fn, void *arg)
{
    inbox_item *it = iy_calloc(1, sizeof *it);
    it->fn = fn;
    it->arg = arg;
    push(t, it);
}

void iothread_post_ctl(iothread *t, int ctl)
{
    inbox_item *it = iy_calloc(1, sizeof *it);
    it->ctl = ctl;
    push(t, it);
}


void iothread_user_add(iothread *t, conn *c)
{
    conn *head = u64map_get(&t->users, c->user);
    c->user_prev = NULL;
    c->user_next = head;
    if (head) head->user_prev = c;
    u64map_put(&t->users, c->user, c);
}

conn *iothread_user_first(iothread *t, uint64_t user) { return u64map_get(&t->users, user); }

void iothread_user_del(iothread *t, conn *c)
{
    if (c->user_prev) c->user_prev->user_next = c->user_next;
    else if (c->user_next) u64map_put(&t->users, c->user, c->user_next);
    else u64map_del(&t->users, c->user);
    if (c->user_next) c->user_next->user_prev = c->user_prev;
    c->user_prev = c->user_next = NULL;
}

static void close_cb_nothing(uv_handle_t *h) { (void)h; }

static void stop_accepting(iothread *t)
{
    if (!t->listening) return;
    t->listening = 0;
    for (unsigned i = 0; i < t->cfg->nlisten; i++) uv_close((uv_handle_t *)&t->listeners[i], close_cb_nothing);
}

/* After THREAD_EXIT: the loop ends once every socket is closed. A peer that
 * does not read (the close frame stuck in our buffer) or never closes its
 * end gets EXIT_GRACE_MS, then its socket is closed under it: a shutdown
 * never waits on a client. */
static void on_exit_tick(uv_timer_t *tm)
{
    iothread *t = tm->data;
    if (t->all && uv_now(&t->loop) - t->exit_since < EXIT_GRACE_MS) return;
    while (t->all) conn_close(t->all);
    uv_close((uv_handle_t *)tm, close_cb_nothing);
}

static void on_wake(uv_async_t *a)
{
    iothread *t = a->data;
    pthread_mutex_lock(&t->mu);
    inbox_item *it = t->head;
    t->head = t->tail = NULL;
    pthread_mutex_unlock(&t->mu);
    while (it) {
        inbox_item *next = it->next;
        if (it->fn) {
            it->fn(t, it->arg);
        } else if (it->ctl == THREAD_STOP_ACCEPT) {
            stop_accepting(t);
        } else if (it->ctl == THREAD_DRAIN) {
            stop_accepting(t);
            for (conn *c = t->all, *n; c; c = n) {
                n = c->all_next;
                if (!c->closing) t->h->drain(c);
            }
        } else if (it->ctl == THREAD_EXIT) {
            t->exiting = 1;
            stop_accepting(t);
            for (conn *c = t->all, *n; c; c = n) {
                n = c->all_next;
                /* One already closing has said goodbye (or is stuck saying it). */
                if (c->proto == PROTO_WS && !c->closing) conn_ws_close(c, 1012, "service restart");
                else if (c->draining || c->proto != PROTO_WS) conn_close(c);
            }
            uv_close((uv_handle_t *)&t->sweeper, close_cb_nothing);
            uv_close((uv_handle_t *)&t->sweep_more, close_cb_nothing);
            uv_close((uv_handle_t *)&t->flusher, close_cb_nothing);
            uv_close((uv_handle_t *)&t->wake, close_cb_nothing);
            conn_flush_all(t);
            t->exit_since = uv_now(&t->loop);
            uv_timer_init(&t->loop, &t->exit_timer);
            t->exit_timer.data = t;
            uv_timer_start(&t->exit_timer, on_exit_tick, 0, 50);
        }
        iy_free(it);
        it = next;
    }
}

static void on_flush(uv_prepare_t *p) { conn_flush_all(p->data); }

/* Connections ended per slice of a sweep: about a millisecond of work;
 * the loop serves its sockets between slices. */
#define SWEEP_BUDGET 128

static void on_sweep_more(uv_timer_t *tm)
{
    iothread *t = tm->data;
    if (conn_sweep(t, uv_now(&t->loop), SWEEP_BUDGET)) uv_timer_start(&t->sweep_more, on_sweep_more, 1, 0);
}

static void on_sweep(uv_timer_t *tm)
{
    iothread *t = tm->data;
    if (!uv_is_active((uv_handle_t *)&t->sweep_more) && conn_sweep(t, uv_now(&t->loop), SWEEP_BUDGET))
        uv_timer_start(&t->sweep_more, on_sweep_more, 1, 0);
    t->h->sweep(t, uv_now(&t->loop));
    /* Connections come and go (a wave of connects leaves their HTTP side,
     * auth jobs and frames behind; a wave that went quiet its buffers):
     * the freed memory is holes between live connections that glibc keeps.
     * malloc_trim hands whole free pages back: every 2 s while connections
     * are accepted or buffers freed, and once more 2 s after (what other
     * threads free for them later: auth jobs, store reads, presence batches).
     * Measured at 15,000 idle connections: a trim once a second after 1 MB
     * of idle buffers left ~60 bytes more per connection, and a single trim
     * a second after the last connect ~40 more. */
    uint64_t now = uv_now(&t->loop);
    if (now - t->idle_trim_ms >= 2000) {
        int churn = t->accepted != t->accepted_at_trim || t->idle_freed > (64u << 10);
        if (churn || t->trim_trailing) t->trim_pending = 1;
        t->trim_trailing = churn;
    }
    if (t->trim_pending) {
        t->accepted_at_trim = t->accepted;
        t->idle_freed = 0;
        t->idle_trim_ms = now;
        /* glibc keeps freed memory for reuse; after slow readers' megabytes
         * went, give it back so that an attack does not leave RSS behind. */
        t->trim_pending = 0;
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        malloc_trim(0);   /* glibc's: the sanitizers' allocators replace it (and it crashes there) */
#endif
    }
}

void iothread_freed(iothread *t, size_t bytes)
{
    t->idle_freed += bytes;
}

static void on_connection(uv_stream_t *listener, int status)
{
    iothread *t = listener->data;
    if (status < 0) {
        /* Out of descriptors (EMFILE): libuv accepts and closes the waiting
         * connections with its reserve descriptor, so the loop does not
         * spin; we say so once a second. */
        uint64_t now = uv_now(&t->loop);
        metrics_add(M_CONNS_REFUSED, 1);
        if (now - t->refused_logged_ms >= 1000) {
            iy_log_error("io thread %u: accept: %s", t->index, uv_strerror(status));
            t->refused_logged_ms = now;
        }
        return;
    }
    conn_accept(t, listener, t->cfg->listen[(uv_tcp_t *)listener - t->listeners].admin);
}

/* A listening socket of our own so that SO_REUSEPORT is set before bind
 * (libuv 1.44 has no flag for it). SO_REUSEPORT would also let a second
 * iyagid of the same user bind the port and take half of its connections
 * (two data directories behind one address), so the first thread first
 * binds a probe without it: that fails while anything listens on the port.
 * (Two servers starting in the same instant could still both pass.) An
 * IPv6 socket is IPv6 only, so that [::]:P and 0.0.0.0:P can both be served. */
static int listen_socket(const net_listen *l, int probe, int *fd_out)
{
    const struct sockaddr *sa = (const struct sockaddr *)&l->sa;
    int one = 1, fam = sa->sa_family;
    if (probe) {
        int pfd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (pfd < 0) {
            iy_log_error("cannot listen on %s: %s", l->text, strerror(errno));
            return IY_EIO;
        }
        setsockopt(pfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fam == AF_INET6) setsockopt(pfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        int bad = bind(pfd, sa, l->len) != 0 ? errno : 0;
        close(pfd);
        if (bad) {
            iy_log_error("cannot listen on %s: %s%s", l->text, strerror(bad),
                   bad == EADDRINUSE ? " (another server, perhaps another iyagid, serves it)"
                   : bad == EACCES   ? " (ports below 1024 need CAP_NET_BIND_SERVICE)"
                   : bad == EADDRNOTAVAIL ? " (no interface of this machine has that address)" : "");
            return IY_EIO;
        }
    }
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return IY_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (fam == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, sa, l->len) != 0) {
        iy_log_error("cannot listen on %s: %s", l->text, strerror(errno));
        close(fd);
        return IY_EIO;
    }
    *fd_out = fd;
    return 0;
}

static void *thread_main(void *arg)
{
    iothread *t = arg;
    /* Named for top -H, perf --sort comm and /proc/PID/task/TID/comm (the
     * CPU an I/O thread spends per delivery is a benchmark figure). */
    char name[16];
    snprintf(name, sizeof name, "iyagi-io%u", t->index);
    pthread_setname_np(pthread_self(), name);
    uv_run(&t->loop, UV_RUN_DEFAULT);
    /* Every handle is closed: the loop can go. */
    int rc = uv_loop_close(&t->loop);
    if (rc) iy_log_error("io thread %u: loop close: %s", t->index, uv_strerror(rc));
    return NULL;
}

int iothread_new(unsigned index, const net_config *cfg, const net_handlers *h, void *svc,
                 iothread **out)
{
    iothread *t = iy_calloc(1, sizeof *t);
    t->cfg = cfg;
    t->h = h;
    t->svc = svc;
    t->index = index;
    t->readbuf = iy_malloc(READ_BUF_SIZE);
    pthread_mutex_init(&t->mu, NULL);
    int fd = -1, rc = uv_loop_init(&t->loop);
    if (rc) goto err;
    uv_async_init(&t->loop, &t->wake, on_wake);
    t->wake.data = t;
    uv_prepare_init(&t->loop, &t->flusher);
    t->flusher.data = t;
    uv_prepare_start(&t->flusher, on_flush);
    uv_timer_init(&t->loop, &t->sweeper);
    t->sweeper.data = t;
    uv_timer_start(&t->sweeper, on_sweep, 250, 250);
    uv_timer_init(&t->loop, &t->sweep_more);
    t->sweep_more.data = t;

    for (unsigned i = 0; i < cfg->nlisten; i++) {
        if (listen_socket(&cfg->listen[i], index == 0, &fd) != 0) goto err;
        uv_tcp_t *lt = &t->listeners[i];
        uv_tcp_init(&t->loop, lt);
        lt->data = t;
        if ((rc = uv_tcp_open(lt, fd)) != 0 || (rc = uv_listen((uv_stream_t *)lt, 4096, on_connection)) != 0) {
            iy_log_error("listen on %s: %s", cfg->listen[i].text, uv_strerror(rc));
            goto err;
        }
    }
    t->listening = 1;
    *out = t;
    return 0;
err:
    /* The loop never ran: no handle has callbacks pending. Leak-free teardown
     * would need a loop run; we are exiting anyway. */
    iy_log_error("io thread %u failed to start", index);
    return IY_EIO;
}

int iothread_run(iothread *t)
{
    return pthread_create(&t->thread, NULL, thread_main, t) == 0 ? 0 : IY_EIO;
}

void iothread_join(iothread *t)
{
    pthread_join(t->thread, NULL);
    conn_pool_free(t);
    u64map_free(&t->users);
    iy_buf_free(&t->scratch);
    iy_free(t->readbuf);
    pthread_mutex_destroy(&t->mu);
    iy_free(t);
}
