/* server.c — start-up and orderly shutdown of iyagid: the composition root
 * that builds the store, the service (chat/service.h), the threads and the
 * bus, and takes them down in order.
 *
 * Start: store (schema checked, node number claimed) -> VAPID key from the
 * store -> I/O threads bound (not running) -> bus -> storage thread ->
 * readers -> push worker -> I/O threads running. Nothing can accept a
 * connection before the storage thread exists.
 * Stop (SIGTERM/SIGINT): listeners closed -> storage thread drains its
 * queue (every accepted send is committed and answered) -> readers drained
 * -> push worker -> sockets closed (WebSockets with 1001) -> store closed. */
#include "server.h"
#include "adminsock.h"
#include "../api/routes.h"
#include "../chat/chat.h"
#include "../chat/presence.h"
#include "../chat/registry.h"
#include "../chat/social.h"
#include "../chat/tokens.h"
#include "../chat/limiter.h"
#include "../base/counter.h"
#include "../base/metrics.h"
#include "../base/version.h"
#include "../store/indexer.h"
#include "../media/thumb.h"
#include "../push/pushd.h"
#include "../push/webpush.h"
#include "../net/tls.h"
#include <curl/curl.h>
#include "../base/alloc.h"
#include "../base/err.h"
#include "../base/log.h"
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct server {
    server_config cfg;
    service svc;
    store *store;
    adminsock *admin;           /* DATA/admin.sock: online backups (embedded store only) */
    uv_loop_t main_loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t presence_timer;
    uv_timer_t registry_timer;
    uv_timer_t drain_timer;
    uint64_t drain_until;       /* loop ms */
    uint64_t ticks;             /* presence ticks so far */
} server;

void server_config_defaults(server_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->listen[0], sizeof cfg->listen[0], "127.0.0.1:8080");
    cfg->nlisten = 0;           /* main.c: 127.0.0.1:8080 when none is given */
    snprintf(cfg->listen_host, sizeof cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    snprintf(cfg->data_dir, sizeof cfg->data_dir, "data");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n > 0 ? (unsigned)n : 1;
    cfg->presence_timeout_s = 30;
    cfg->auth_timeout_s = 10;
    cfg->token_cache = 100000;
    cfg->idle_timeout_s = 60;
    cfg->max_backlog = DBQ_SHED_SENDS;
    cfg->max_queue_ms = DBQ_SHED_MS;
    cfg->push_retry_base_ms = 1000;
    cfg->push_give_up_s = 86400;
    cfg->shutdown_timeout_s = 10;
    cfg->rate_limits = 1;
    cfg->max_per_addr = 512;
    cfg->max_user_sockets = 32;
    cfg->request_timeout_s = 10;
    cfg->keepalive_timeout_s = 30;
    cfg->min_body_rate = 16384;
    cfg->max_buffered_mb = 128;
    cfg->min_free_mb = 256;
    cfg->cache_mb = STORE_CACHE_MB_DEFAULT;
    cfg->max_upload_mb = 25;
    cfg->max_output_mb = 256;
    cfg->log_level = IY_LOG_INFO;
    cfg->log_format = IY_LOG_TEXT;
    snprintf(cfg->access_log, sizeof cfg->access_log, "off");
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

/* The data directory is the server's alone: 0700, and nothing in it
 * readable by group or others, whatever a directory that existed before
 * (or an old version, or a copy) left there. New files follow the umask
 * main() sets. */
static int private_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if ((type == FTW_F || type == FTW_D || type == FTW_DP) && (st->st_mode & 077) &&
        chmod(path, st->st_mode & 07700) != 0)
        iy_log_error("cannot make %s private: %s", path, strerror(errno));
    return 0;
}

static void make_private(const char *dir)
{
    if (nftw(dir, private_entry, 16, FTW_PHYS) != 0)
        iy_log_error("cannot walk the data directory %s: %s", dir, strerror(errno));
}

static void beat(server *srv);

/* Draining: stop once every WebSocket is closed (they close after their
 * answers), or after DRAIN_MAX_MS (a third of --shutdown-timeout at most). */
#define DRAIN_MAX_MS 3000

/* The shutdown deadline: what is still running then (a store that does not
 * answer, a thread that does not end) is not waited for. Nothing that was
 * acknowledged is lost by exiting: an ack follows the commit. */
static void on_shutdown_deadline(int sig)
{
    (void)sig;
    static const char msg[] = "iyagid: shutdown deadline (--shutdown-timeout) passed: exiting now\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static void arm_shutdown_deadline(int secs)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_shutdown_deadline;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)secs);
}

static void on_drained(uv_timer_t *t)
{
    server *srv = t->data;
    if (metrics_get(M_WS_CONNECTIONS) > 0 && uv_now(t->loop) < srv->drain_until) return;
    uv_timer_stop(t);
    uv_stop(t->loop);
}

/* SIGTERM/SIGINT: drain, then stop. Draining: out of discovery at once
 * (a `leaving` beat; /healthz answers 503), no new connections, every
 * WebSocket closed with 1012 so its client goes back to discovery at once;
 * then the storage thread finishes what was accepted (server_run). A
 * second signal stops at once. */
static void on_signal(uv_signal_t *s, int signum)
{
    server *srv = s->data;
    service *svc = &srv->svc;
    if (atomic_exchange(&svc->draining, 1)) {
        iy_log_warn("signal %d again: stopping now", signum);
        uv_stop(&srv->main_loop);
        return;
    }
    iy_log_info("signal %d: draining (out of discovery, sockets told to move with 1012), then stopping "
           "(within %d s)", signum, srv->cfg.shutdown_timeout_s);
    arm_shutdown_deadline(srv->cfg.shutdown_timeout_s);
    metrics_set(M_DRAINING, 1);
    beat(srv);
    for (unsigned i = 0; i < svc->nthreads; i++) iothread_post_ctl(svc->threads[i], THREAD_DRAIN);
    /* A moment for the close frames and the leave beat to go out, at least. */
    uint64_t drain_ms = (uint64_t)srv->cfg.shutdown_timeout_s * 1000 / 3;
    srv->drain_until = uv_now(&srv->main_loop) + (drain_ms < DRAIN_MAX_MS ? drain_ms : DRAIN_MAX_MS);
    uv_timer_start(&srv->drain_timer, on_drained, 200, 50);
}

/* SIGHUP: the certificate and key files again (renewed), for new
 * connections (the open ones keep theirs; a failure keeps the old ones),
 * and the access log's file opened again (log rotation). */
static void on_sighup(uv_signal_t *s, int signum)
{
    server *srv = s->data;
    char err[512];
    if (srv->svc.net.tls) {
        if (tls_server_reload(srv->svc.net.tls, err, sizeof err) == 0)
            iy_log_info("SIGHUP: TLS certificate reloaded from %s; new connections use it", srv->cfg.tls_cert);
        else
            iy_log_error("SIGHUP: TLS certificate not reloaded, the old one stays: %s", err);
    }
    int rc = iy_access_log_reopen();
    if (rc < 0) iy_log_error("signal %d: cannot reopen the access log: %s", signum, strerror(-rc));
    else if (rc == 0) iy_log_info("signal %d: access log reopened", signum);
}

static void on_presence_tick(uv_timer_t *t)
{
    server *srv = t->data;
    int64_t now = (int64_t)now_ms();
    presence_tick(srv->svc.presence, now, registry_lead(srv->svc.registry));
    if (++srv->ticks % 40 == 0) service_limits_sweep(srv->svc.limits, now);   /* every 10 s */
}

/* The registry beat: this node's entry to every node, and forget the silent. */
static void beat(server *srv)
{
    service *svc = &srv->svc;
    bus_node_info self;
    registry_update_self(svc->registry, (uint32_t)metrics_get(M_WS_CONNECTIONS), svc->draining);
    registry_self(svc->registry, &self);
    bus_announce_node(svc->bus, &self);
    registry_expire(svc->registry);
    metrics_set(M_CLUSTER_NODES, (int64_t)registry_count(svc->registry));
}

static void on_registry_tick(uv_timer_t *t) { beat(t->data); }

/* Cluster events (bus threads and the main loop: thread-safe targets only). */
static void on_node(void *ctx, const bus_node_info *n)
{
    registry_heard(((service *)ctx)->registry, n);
}

static void on_presence(void *ctx, const bus_presence_info *p)
{
    presence_remote(((service *)ctx)->presence, p->node, p->user, p->online, p->global, p->last_active);
}

/* Another node deleted a session: its token is refused here at once. */
static void on_revoked(void *ctx, uint64_t user, const uint8_t session[32])
{
    (void)user;
    tokens_forget(((service *)ctx)->tokens, session);
}

/* The bus lost (cut = 1) or regained (0) NATS: revocations sent meanwhile
 * may be lost, so the token cache empties and stays off until it is back. */
static void on_bus_cut(void *ctx, int cut)
{
    service *svc = ctx;
    if (cut) tokens_pause(svc->tokens);
    else tokens_resume(svc->tokens);
}

/* A node joined, restarted or left: what it said of presence no longer
 * holds; a joiner learns who is online here. */
static void on_node_change(void *ctx, unsigned node, int joined)
{
    service *svc = ctx;
    presence_node_gone(svc->presence, node, (int64_t)now_ms());
    if (joined) {
        presence_reannounce(svc->presence);
        return;
    }
    /* A node that died may have committed messages whose publishes never
     * left it: every socket here compares its pos with the store. */
    for (unsigned i = 0; i < svc->nthreads; i++) {
        bus_event *ev = iy_calloc(1, sizeof *ev);
        ev->kind = BUS_RESYNC;
        service_post_event(svc->threads[i], ev);
    }
}

/* The presence registry's local-view changes go to the other nodes. */
static void announce_presence(void *ctx, uint64_t user, int online, int global, int64_t last_active)
{
    service *svc = ctx;
    bus_presence_info p = { svc->node, user, online, global, last_active };
    bus_announce_presence(svc->bus, &p);
}

/* The push worker asks before it sends: online on any node? */
static int push_online(void *ctx, uint64_t user)
{
    return presence_online(((service *)ctx)->presence, user);
}

/* What this node can hold by default: its open-file limit, less a reserve. */
static uint32_t default_capacity(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 100000;
    return rl.rlim_cur > 1100 ? (uint32_t)(rl.rlim_cur - 1000) : (uint32_t)rl.rlim_cur / 2;
}

/* This node's WebSocket URL as discovery hands it out. */
static void self_ws_url(const server_config *cfg, char *out, size_t n)
{
    const char *pub = cfg->public_url, *scheme = "ws://", *rest = pub;
    if (!pub[0]) {
        char hp[300];
        net_url_host(cfg->listen_host, cfg->listen_port, hp, sizeof hp);
        snprintf(out, n, "%s%s/v1/ws", cfg->tls_cert[0] ? "wss://" : "ws://", hp);
        return;
    }
    if (strncmp(pub, "https://", 8) == 0) scheme = "wss://", rest = pub + 8;
    else if (strncmp(pub, "http://", 7) == 0) rest = pub + 7;
    size_t len = strlen(rest);
    while (len && rest[len - 1] == '/') len--;
    snprintf(out, n, "%s%.*s/v1/ws", scheme, (int)len, rest);
}

/* The Web Push key pair lives in the store (every node signs with the same
 * key). A data directory of an older iyagid kept it in DIR/vapid.pem: that
 * key moves into the store, so subscriptions made with it keep working. */
static int load_vapid(store *st, const char *dir, vapid **out)
{
    char *v = NULL;
    size_t vl = 0;
    int rc = store_setting_get(st, "vapid", &v, &vl);
    if (rc == IY_ENOTFOUND) {
        char path[4200];
        iy_buf pem = { 0 };
        snprintf(path, sizeof path, "%s/vapid.pem", dir);
        rc = vapid_read_file(path, &pem);
        if (rc == 0) iy_log_info("push: moving the VAPID key of %s into the store", path);
        else if (rc == IY_ENOTFOUND && (rc = vapid_new_pem(&pem)) == 0) iy_log_info("push: created a VAPID key");
        if (rc == 0) rc = store_setting_put_once(st, "vapid", pem.data, pem.len, &v, &vl);
        iy_buf_free(&pem);
    }
    if (rc == 0) rc = vapid_from_pem(v, vl, out);
    if (v) memset(v, 0, vl);
    iy_free(v);
    if (rc) iy_log_error("push: cannot load the VAPID key (%s)", iy_err_code(rc));
    return rc;
}

/* glibc gives each thread that allocates its own arena (up to 8 per core):
 * a connection allocated on an I/O thread and freed on it, a store buffer
 * made on the storage thread and freed on an I/O thread, each arena keeping
 * its own free space. As many arenas as I/O threads (at least 2) kept ~90 B
 * less per idle connection and ~20 MB less on a big store, at no measured
 * CPU cost (docs/BENCHMARKS.md). MALLOC_ARENA_MAX, when set, decides. */
static void limit_arenas(unsigned io_threads)
{
    if (getenv("MALLOC_ARENA_MAX")) return;
    mallopt(M_ARENA_MAX, io_threads > 2 ? (int)io_threads : 2);
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

/* The blob directory and its tmp/ (private), with what an interrupted
 * upload left in tmp/ removed. */
static int blobs_prepare(const char *dir)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/tmp", dir);
    if (mkdir_p(dir) != 0 || mkdir_p(tmp) != 0) {
        iy_log_error("cannot create the blob directory %s: %s", dir, strerror(errno));
        return IY_EIO;
    }
    make_private(dir);
    make_private(tmp);
    DIR *d = opendir(tmp);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char p[4500];
        snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    return 0;
}

int server_run(const server_config *cfg)
{
    server *srv = iy_calloc(1, sizeof *srv);
    service *svc = &srv->svc;
    srv->cfg = *cfg;
    int rc = IY_EIO;
    signal(SIGPIPE, SIG_IGN);
    iy_log_setup(cfg->log_level, cfg->log_format);
    if ((rc = iy_access_log_open(cfg->access_log)) != 0) {
        iy_log_error("cannot open the access log %s: %s", cfg->access_log, strerror(-rc));
        rc = IY_EIO;
        goto out;
    }
    rc = IY_EIO;
    limit_arenas(cfg->threads);            /* before any thread starts */
    curl_global_init(CURL_GLOBAL_DEFAULT); /* before any thread starts */
    raise_fd_limit();
    if (cfg->tls_cert[0]) {
        char err[512];
        if (tls_server_new(cfg->tls_cert, cfg->tls_key, &svc->net.tls, err, sizeof err) != 0) {
            iy_log_error("TLS: %s", err);
            goto out;
        }
    }
    if (mkdir_p(cfg->data_dir) != 0) {
        iy_log_error("cannot create data directory %s: %s", cfg->data_dir, strerror(errno));
        goto out;
    }
    make_private(cfg->data_dir);
    char node[128];
    if (cfg->node[0]) snprintf(node, sizeof node, "%s", cfg->node);
    else net_url_host(cfg->listen_host, cfg->listen_port, node, sizeof node);
    unsigned nreaders = cfg->threads > 1 ? 2 : 1;
    store_config sc = { cfg->store[0] ? cfg->store : cfg->data_dir, node, (int)nreaders,
                        (uint64_t)cfg->min_free_mb << 20, cfg->cache_mb };
    if ((rc = store_open(&sc, &srv->store)) != 0) goto out;
    if ((rc = load_vapid(srv->store, cfg->data_dir, &svc->vapid)) != 0) goto out_store;
    svc->store = srv->store;
    metrics_set_build(store_kind(srv->store), IYAGI_COMMIT);
    metrics_set_source(store_metrics, srv->store);
    metrics_http_routes(api_route_names, api_route_count);
    chat_metrics_ops();

    snprintf(svc->cfg.public_url, sizeof svc->cfg.public_url, "%s", cfg->public_url);
    snprintf(svc->cfg.node_name, sizeof svc->cfg.node_name, "%s", node);
    svc->cfg.presence_timeout_s = cfg->presence_timeout_s;
    svc->cfg.push_allow_private = cfg->push_allow_private;
    svc->cfg.max_backlog = cfg->max_backlog;
    svc->cfg.max_queue_ms = cfg->max_queue_ms;
    svc->cfg.max_upload = (uint64_t)cfg->max_upload_mb << 20;
    if (cfg->blob_dir[0]) snprintf(svc->cfg.blob_dir, sizeof svc->cfg.blob_dir, "%s", cfg->blob_dir);
    else snprintf(svc->cfg.blob_dir, sizeof svc->cfg.blob_dir, "%.4000s/blobs", cfg->data_dir);
    if (blobs_prepare(svc->cfg.blob_dir) != 0) goto out_store;
    if (cfg->bus[0] && !cfg->blob_dir[0])
        iy_log_warn("attachments: --blob-dir is not set: uploads stay on this node's disk (%s), where other"
               " nodes cannot serve them; give every node the same shared directory", svc->cfg.blob_dir);
    snprintf(svc->net.host, sizeof svc->net.host, "%s", cfg->listen_host);
    svc->net.port = cfg->listen_port;
    svc->net.auth_timeout_s = cfg->auth_timeout_s;
    svc->net.idle_timeout_s = cfg->idle_timeout_s;
    for (unsigned i = 0; i < cfg->ntrust; i++)
        if (net_parse_cidr(cfg->trust_proxy[i], &svc->net.trust[svc->net.ntrust]) == 0) svc->net.ntrust++;
    {
        char err[512];
        unsigned n = cfg->nlisten ? cfg->nlisten : 1;
        for (unsigned i = 0; i < n + cfg->nadmin; i++) {
            const char *l = i < n ? (cfg->nlisten ? cfg->listen[i] : "127.0.0.1:8080") : cfg->admin_listen[i - n];
            if (net_add_listen(&svc->net, l, i >= n, err, sizeof err) != 0) {
                iy_log_error("cannot listen: %s", err);
                goto out_store;
            }
        }
    }
    svc->net.request_timeout_s = cfg->request_timeout_s;
    svc->net.keepalive_timeout_s = cfg->keepalive_timeout_s;
    svc->net.min_body_rate = cfg->min_body_rate;
    svc->net.max_buffered = (size_t)cfg->max_buffered_mb << 20;
    svc->net.max_output = (size_t)cfg->max_output_mb << 20;
    svc->net.ws_route = api_route_of((iy_str){ "/v1/ws", 6 });
    svc->net.admin_listen_set = cfg->nadmin > 0;
    snprintf(svc->cfg.metrics_token, sizeof svc->cfg.metrics_token, "%s", cfg->metrics_token);
    svc->net.cors_origins = cfg->cors_origin;   /* cfg outlives the service */
    if (cfg->rate_limits) {
        svc->net.max_per_addr = cfg->max_per_addr;
        svc->net.per_addr = counter_new();
        svc->cfg.max_user_sockets = cfg->max_user_sockets;
        svc->user_sockets = counter_new();
    }
    svc->node = store_node(srv->store);
    svc->cluster = cfg->bus[0] != '\0';
    svc->cfg.capacity = cfg->capacity ? cfg->capacity : default_capacity();
    /* Past the capacity (below the open-file limit: room for the store's
     * and the bus's own files) new connections are refused at accept. */
    svc->net.max_conns = cfg->max_conns ? cfg->max_conns : default_capacity();
    bus_node_info self = { .number = svc->node, .incarnation = (int64_t)now_ms(),
                           .capacity = svc->cfg.capacity };
    snprintf(self.name, sizeof self.name, "%s", node);
    self_ws_url(cfg, self.ws_url, sizeof self.ws_url);
    svc->registry = registry_new(&self, on_node_change, svc);
    svc->social = social_batch_new();
    svc->limits = cfg->rate_limits ? service_limits_new() : NULL;
    svc->tokens = tokens_new(cfg->token_cache, TOKENS_TTL_MS);
    svc->presence = presence_new(cfg->presence_timeout_s, svc->node, social_publish,
                                 svc->cluster ? announce_presence : NULL, svc);
    svc->nthreads = cfg->threads;
    svc->threads = iy_calloc(svc->nthreads, sizeof *svc->threads);
    rc = IY_EIO;
    for (unsigned i = 0; i < svc->nthreads; i++)
        if (iothread_new(i, &svc->net, &service_handlers, svc, &svc->threads[i]) != 0) goto out_store;
    if (svc->cluster) {
        bus_cluster_fns fns = { svc, on_node, on_presence, on_revoked, on_bus_cut };
        svc->bus = bus_nats_new(cfg->bus, svc->nthreads, service_post_event, (void **)svc->threads, svc->node, &fns);
        if (!svc->bus) goto out_store;
    } else {
        svc->bus = bus_local_new(svc->nthreads, service_post_event, (void **)svc->threads);
    }
    dbq_round_fns round = commit_round_fns(svc);
    svc->dbq = dbq_start(srv->store, &round, service_post_job);
    if (!svc->dbq) goto out_store;
    /* Reads that need no ordering against the bus (readq.h): two threads at
     * most, the machine's cores are shared with the I/O and storage threads. */
    svc->readq = readq_start(srv->store, nreaders, service_post_job);
    if (!svc->readq) goto out_store;
    pushd_config pc = { cfg->push_allow_private, cfg->push_retry_base_ms, cfg->push_give_up_s,
                        "mailto:postmaster@iyagi.invalid", push_online, svc };
    svc->pushd = pushd_start(svc->dbq, svc->vapid, &pc);
    if (!svc->pushd) goto out_store;
    /* Search is not worth refusing to start for: without an index the
     * search endpoint answers 503 and everything else works. */
    svc->indexer = indexer_start(srv->store);
    if (!svc->indexer) iy_log_warn("search: no search index: searches answer 503");
    /* `iyagid admin backup` asks this server (RocksDB admits one process). */
    if (!cfg->store[0]) srv->admin = adminsock_start(cfg->data_dir, svc->cfg.blob_dir, srv->store);

    uv_loop_init(&srv->main_loop);
    uv_signal_init(&srv->main_loop, &srv->sigterm);
    uv_signal_init(&srv->main_loop, &srv->sigint);
    uv_signal_init(&srv->main_loop, &srv->sighup);
    srv->sigterm.data = srv->sigint.data = srv->sighup.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    uv_signal_start(&srv->sighup, on_sighup, SIGHUP);
    uv_timer_init(&srv->main_loop, &srv->presence_timer);
    srv->presence_timer.data = srv;
    uv_timer_start(&srv->presence_timer, on_presence_tick, 250, 250);
    uv_timer_init(&srv->main_loop, &srv->registry_timer);
    srv->registry_timer.data = srv;
    uv_timer_init(&srv->main_loop, &srv->drain_timer);
    srv->drain_timer.data = srv;
    if (svc->cluster) {
        beat(srv);
        uv_timer_start(&srv->registry_timer, on_registry_tick, REGISTRY_BEAT_MS, REGISTRY_BEAT_MS);
    }

    for (unsigned i = 0; i < svc->nthreads; i++) iothread_run(svc->threads[i]);
    char addrs[NET_MAX_LISTEN * 96] = "";
    for (unsigned i = 0, k = 0; i < svc->net.nlisten; i++)
        k += (unsigned)snprintf(addrs + k, sizeof addrs - k, "%s%s://%s/%s", i ? ", " : "",
                                svc->net.tls && !svc->net.listen[i].admin ? "https" : "http", svc->net.listen[i].text,
                                svc->net.listen[i].admin ? " (admin)" : "");
    iy_log_info("iyagid listening on %s (node %s, node number %u, %s store %s, %s, capacity %u, %u I/O threads)",
           addrs, node, svc->node, store_kind(srv->store),
           cfg->store[0] ? "shared" : cfg->data_dir, svc->cluster ? "NATS bus" : "single node",
           svc->cfg.capacity, svc->nthreads);

    uv_run(&srv->main_loop, UV_RUN_DEFAULT);

    adminsock_stop(srv->admin);   /* a backup in progress is abandoned, leaving no OUT */
    for (unsigned i = 0; i < svc->nthreads; i++) iothread_post_ctl(svc->threads[i], THREAD_STOP_ACCEPT);
    dbq_stop(svc->dbq);
    readq_stop(svc->readq); /* drained while the I/O threads still take its answers */
    pushd_stop(svc->pushd); /* after the storage thread: nothing can answer it any more */
    indexer_stop(svc->indexer);
    for (unsigned i = 0; i < svc->nthreads; i++) iothread_post_ctl(svc->threads[i], THREAD_EXIT);
    for (unsigned i = 0; i < svc->nthreads; i++) iothread_join(svc->threads[i]);
    uv_walk(&srv->main_loop, close_walk, NULL);
    uv_run(&srv->main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->main_loop);
    dbq_free(svc->dbq);
    readq_free(svc->readq); /* its readers go before the store */
    bus_free(svc->bus);       /* no more bus callbacks into presence and the registry */
    presence_free(svc->presence);
    social_batch_free(svc->social);
    tokens_free(svc->tokens);
    registry_free(svc->registry);
    service_limits_free(svc->limits);
    counter_free(svc->net.per_addr);
    counter_free(svc->user_sockets);
    vapid_free(svc->vapid);
    store_free(srv->store);
    tls_server_free(svc->net.tls);   /* every connection, and its reference, is gone */
    iy_free(svc->threads);
    iy_free(srv);
    curl_global_cleanup();
    media_thumb_shutdown();   /* libvips's threads (LeakSanitizer cannot scan them at exit) */
    iy_log_info("stopped cleanly");
    return 0;

out_store:
    /* A failed start exits the process: the threads never ran (a thread
     * that was set up is left to the exit). */
    vapid_free(svc->vapid);
    tokens_free(svc->tokens);
    presence_free(svc->presence);
    social_batch_free(svc->social);
    registry_free(svc->registry);
    service_limits_free(svc->limits);
    store_free(srv->store);
out:
    tls_server_free(svc->net.tls);
    iy_free(svc->threads);
    iy_free(srv);
    curl_global_cleanup();
    return rc ? rc : IY_EIO;
}
