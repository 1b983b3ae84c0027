/* server.c — start-up and orderly shutdown of iyagid.
 *
 * Start: store -> I/O threads bound (not running) -> bus -> storage thread
 * -> I/O threads running. Nothing can accept a connection before the
 * storage thread exists.
 * Stop (SIGTERM/SIGINT): listeners closed -> storage thread drains its
 * queue (every accepted send is committed and answered) -> sockets closed
 * (WebSockets with 1001) -> store closed. */
#include "server.h"
#include "presence.h"
#include "metrics.h"
#include "../push/pushd.h"
#include <curl/curl.h>
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

void server_config_defaults(server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "data");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n > 0 ? (unsigned)n : 1;
    cfg->presence_timeout_s = 30;
    cfg->auth_timeout_s = 10;
    cfg->idle_timeout_s = 60;
    cfg->max_backlog = DBQ_SHED_SENDS;
    cfg->push_retry_base_ms = 1000;
    cfg->push_give_up_s = 86400;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return IY_EIO;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return IY_EIO;
    return 0;
}

static void on_signal(uv_signal_t *s, int signum)
{
    server *srv = s->data;
    iy_log("signal %d: shutting down", signum);
    srv->stopping = 1;
    uv_stop(&srv->main_loop);
}

static void on_presence_tick(uv_timer_t *t)
{
    server *srv = t->data;
    presence_tick(srv->presence, (int64_t)now_ms());
}

/* Storage thread, after each send joined the batch: members with no
 * connected socket get a push notification, written in the same commit. */
static void on_stored(void *ctx, store_batch *b, dbq_job *j)
{
    server *srv = ctx;
    const iy_stored *st = &j->stored;
    if (st->msg.event) return; /* membership events are not pushed */
    for (uint32_t i = 0; i < st->nmembers; i++) {
        uint64_t u = st->members[i];
        if (u == st->msg.from || presence_devices(srv->presence, u) > 0) continue;
        if (store_batch_push(b, u, &st->msg, j->text, j->send.text_len) == 0) {
            metrics_add(M_PUSH_QUEUED, 1);
            srv->push_queued = 1;
        }
    }
}

static void on_committed(void *ctx)
{
    server *srv = ctx;
    if (!srv->push_queued) return;
    srv->push_queued = 0;
    pushd_kick(srv->pushd);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

int server_run(const server_config *cfg)
{
    server *srv = iy_calloc(1, sizeof *srv);
    srv->cfg = *cfg;
    int rc = IY_EIO;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread starts */
    raise_fd_limit();
    if (mkdir_p(cfg->data_dir) != 0) {
        iy_log("cannot create data directory %s: %s", cfg->data_dir, strerror(errno));
        goto out;
    }
    if (store_open(cfg->data_dir, 0, &srv->store) != 0) goto out;
    char vapid_path[4200];
    snprintf(vapid_path, sizeof vapid_path, "%s/vapid.pem", cfg->data_dir);
    if (vapid_load_or_create(vapid_path, &srv->vapid) != 0) goto out_store;

    srv->presence = presence_new(cfg->presence_timeout_s, social_publish, srv);
    srv->nthreads = cfg->threads;
    srv->threads = iy_calloc(srv->nthreads, sizeof *srv->threads);
    for (unsigned i = 0; i < srv->nthreads; i++)
        if (iothread_new(srv, i, &srv->threads[i]) != 0) goto out_store;
    srv->bus = bus_local_new(srv->nthreads, iothread_post_event, (void **)srv->threads);
    srv->dbq = dbq_start(srv->store, srv->bus, iothread_post_job);
    if (!srv->dbq) goto out_store;
    dbq_set_hooks(srv->dbq, on_stored, on_committed, srv);
    /* Reads that need no ordering against the bus (readq.h): two threads at
     * most, the machine's cores are shared with the I/O and storage threads. */
    srv->readq = readq_start(srv->store, srv->nthreads > 1 ? 2 : 1, iothread_post_job);
    if (!srv->readq) goto out_store;
    pushd_config pc = { cfg->push_allow_private, cfg->push_retry_base_ms, cfg->push_give_up_s,
                        "mailto:postmaster@iyagi.invalid" };
    srv->pushd = pushd_start(srv->dbq, srv->vapid, &pc);
    if (!srv->pushd) goto out_store;

    uv_loop_init(&srv->main_loop);
    uv_signal_init(&srv->main_loop, &srv->sigterm);
    uv_signal_init(&srv->main_loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_timer_init(&srv->main_loop, &srv->presence_timer);
    srv->presence_timer.data = srv;
    uv_timer_start(&srv->presence_timer, on_presence_tick, 250, 250);

    for (unsigned i = 0; i < srv->nthreads; i++) iothread_run(srv->threads[i]);
    iy_log("iyagid listening on http://%s:%d/ (data %s, %u I/O threads)", cfg->listen_host,
           cfg->listen_port, cfg->data_dir, srv->nthreads);

    uv_run(&srv->main_loop, UV_RUN_DEFAULT);

    for (unsigned i = 0; i < srv->nthreads; i++) iothread_post_ctl(srv->threads[i], THREAD_STOP_ACCEPT);
    dbq_stop(srv->dbq);
    readq_stop(srv->readq); /* drained while the I/O threads still take its answers */
    pushd_stop(srv->pushd); /* after the storage thread: nothing can answer it any more */
    for (unsigned i = 0; i < srv->nthreads; i++) iothread_post_ctl(srv->threads[i], THREAD_EXIT);
    for (unsigned i = 0; i < srv->nthreads; i++) iothread_join(srv->threads[i]);
    uv_walk(&srv->main_loop, close_walk, NULL);
    uv_run(&srv->main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->main_loop);
    dbq_free(srv->dbq);
    readq_free(srv->readq); /* its readers go before the store */
    presence_free(srv->presence);
    vapid_free(srv->vapid);
    bus_free(srv->bus);
    store_free(srv->store);
    iy_free(srv->threads);
    iy_free(srv);
    curl_global_cleanup();
    iy_log("stopped cleanly");
    return 0;

out_store:
    /* A failed start exits the process: the threads never ran. */
    store_free(srv->store);
out:
    return rc;
}
