/* metrics.c — relaxed atomic counters and fixed-bucket histograms, and
 * the gauges read at scrape time (process_* from /proc/self, the store's
 * source).
 *
 * Labelled series have a fixed cardinality: arrays indexed by small
 * numbers (route template x method x status class; op x outcome), never a
 * label value that comes from a request (no raw path, no id, no user).
 * Series never observed are not rendered. */
#include "metrics.h"
#include "err.h"
#include "version.h"
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static _Atomic int64_t counters[M_COUNTER_COUNT];

/* A fixed-bucket histogram: observations <= le[i] count in bucket i, the
 * rest in the last (+Inf). Rendered cumulatively, as Prometheus wants. */
typedef struct histogram {
    const char *name, *help;
    const double *le;          /* bounds in the unit of the metric */
    size_t n;
    _Atomic uint64_t bucket[16];
    _Atomic uint64_t count;
    _Atomic double sum;
} histogram;

static const double batch_le[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096 };
static const double latency_le[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05, 0.1, 0.25, 1 };
static const double push_le[] = { 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 3600, 86400 };
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static histogram h_batch = { "iyagi_commit_batch_size", "Messages per group commit.", batch_le,
                             NELEM(batch_le), { 0 }, 0, 0 };
static histogram h_ack = { "iyagi_ack_latency_seconds", "From receipt of a send to its ack.",
                           latency_le, NELEM(latency_le), { 0 }, 0, 0 };
static const double http_le[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10 };
static const double store_le[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                   1, 5 };
static histogram h_round = { "iyagi_commit_round_seconds", "A commit round, from its start to its sync.",
                             store_le, NELEM(store_le), { 0 }, 0, 0 };
static histogram h_pg_wait = { "iyagi_pg_pool_wait_seconds",
                               "Time a caller waited for a PostgreSQL connection of the pool.",
                               store_le, NELEM(store_le), { 0 }, 0, 0 };
static histogram h_pg_query = { "iyagi_pg_query_seconds", "PostgreSQL round trips (one statement or pipeline).",
                                store_le, NELEM(store_le), { 0 }, 0, 0 };
static histogram h_push = { "iyagi_push_latency_seconds",
                            "From a message's commit to the delivery of its push notification.",
                            push_le, NELEM(push_le), { 0 }, 0, 0 };

static void observe(histogram *h, double v)
{
    size_t i = 0;
    while (i < h->n && v > h->le[i]) i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    /* A CAS loop for the double sum: observations are rare enough. */
    double old = atomic_load_explicit(&h->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, old + v, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* The samples of h; label: "" or `name="value",` (a trailing comma). */
static void render_samples(iy_buf *out, histogram *h, const char *label)
{
    uint64_t cum = 0;
    size_t ll = strlen(label);
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < h->n) iy_buf_appendf(out, "%s_bucket{%sle=\"%g\"} %llu\n", h->name, label, h->le[i], (unsigned long long)cum);
        else iy_buf_appendf(out, "%s_bucket{%sle=\"+Inf\"} %llu\n", h->name, label, (unsigned long long)cum);
    }
    /* The label set without its trailing comma, for _sum and _count. */
    if (ll)
        iy_buf_appendf(out, "%s_sum{%.*s} %.6f\n%s_count{%.*s} %llu\n", h->name, (int)ll - 1, label,
                       atomic_load(&h->sum), h->name, (int)ll - 1, label, (unsigned long long)atomic_load(&h->count));
    else
        iy_buf_appendf(out, "%s_sum %.6f\n%s_count %llu\n", h->name, atomic_load(&h->sum), h->name,
                       (unsigned long long)atomic_load(&h->count));
}

static void render_histogram(iy_buf *out, histogram *h)
{
    iy_buf_appendf(out, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    render_samples(out, h, "");
}

void metrics_observe_batch(uint64_t messages) { observe(&h_batch, (double)messages); }
void metrics_observe_ack_ns(uint64_t ns) { observe(&h_ack, (double)ns / 1e9); }
void metrics_observe_push_ms(int64_t ms) { observe(&h_push, ms > 0 ? (double)ms / 1e3 : 0); }
void metrics_observe_round_ns(uint64_t ns) { observe(&h_round, (double)ns / 1e9); }
void metrics_observe_pg_wait_ns(uint64_t ns) { observe(&h_pg_wait, (double)ns / 1e9); }
void metrics_observe_pg_query_ns(uint64_t ns) { observe(&h_pg_query, (double)ns / 1e9); }

/* ---- labelled series ---- */

#define STATUS_CLASSES 6        /* 1xx .. 5xx, then anything else */
#define OUTCOMES 14             /* ok, then one per error code (-err) */

static const char *const *route_names;
static size_t nroutes;
static const char *const *op_names;
static size_t nops;
static _Atomic uint64_t http_count[METRICS_ROUTES_MAX][MM_COUNT][STATUS_CLASSES];
static histogram h_http[METRICS_ROUTES_MAX];
static _Atomic uint64_t ws_count[METRICS_OPS_MAX][OUTCOMES];
static histogram h_ws[METRICS_OPS_MAX];
static void (*source_fn)(iy_buf *out, void *arg);
static void *source_arg;
static const char *store_kind = "";
static const char *build_commit = "unknown";

void metrics_http_routes(const char *const *names, size_t n)
{
    route_names = names;
    nroutes = n < METRICS_ROUTES_MAX ? n : METRICS_ROUTES_MAX;
    for (size_t i = 0; i < nroutes; i++)
        h_http[i] = (histogram){ "iyagi_http_request_duration_seconds", NULL, http_le, NELEM(http_le), { 0 }, 0, 0 };
}

void metrics_ws_ops(const char *const *names, size_t n)
{
    op_names = names;
    nops = n < METRICS_OPS_MAX ? n : METRICS_OPS_MAX;
    for (size_t i = 0; i < nops; i++)
        h_ws[i] = (histogram){ "iyagi_ws_op_duration_seconds", NULL, latency_le, NELEM(latency_le), { 0 }, 0, 0 };
}

const char *metrics_route_name(unsigned route) { return route < nroutes ? route_names[route] : "other"; }

const char *metrics_method_name(int m)
{
    static const char *const names[MM_COUNT] = { "GET", "POST", "PUT", "PATCH", "DELETE", "OTHER" };
    return m >= 0 && m < MM_COUNT ? names[m] : "OTHER";
}

void metrics_http(unsigned route, int method, int status, uint64_t ns)
{
    if (route >= nroutes) route = 0;
    if (method < 0 || method >= MM_COUNT) method = MM_OTHER;
    int cls = status >= 100 && status < 600 ? status / 100 - 1 : STATUS_CLASSES - 1;
    atomic_fetch_add_explicit(&http_count[route][method][cls], 1, memory_order_relaxed);
    if (nroutes) observe(&h_http[route], (double)ns / 1e9);
}

void metrics_ws_op(unsigned op, int err, uint64_t ns)
{
    if (op >= nops) op = 0;
    int o = err == 0 || err == IY_EEXIST ? 0 : -err;
    if (o < 0 || o >= OUTCOMES) o = -IY_EIO;
    atomic_fetch_add_explicit(&ws_count[op][o], 1, memory_order_relaxed);
    if (nops) observe(&h_ws[op], (double)ns / 1e9);
}

void metrics_set_source(void (*fn)(iy_buf *out, void *arg), void *arg)
{
    source_fn = fn;
    source_arg = arg;
}

void metrics_set_build(const char *kind, const char *commit)
{
    store_kind = kind;
    build_commit = commit;
}

static void render_labelled(iy_buf *out)
{
    static const char *const classes[STATUS_CLASSES] = { "1xx", "2xx", "3xx", "4xx", "5xx", "other" };
    iy_buf_append_str(out, "# HELP iyagi_http_responses_total HTTP requests answered, by route template, method "
                           "and status class.\n# TYPE iyagi_http_responses_total counter\n");
    for (size_t r = 0; r < nroutes; r++)
        for (int m = 0; m < MM_COUNT; m++)
            for (int k = 0; k < STATUS_CLASSES; k++) {
                uint64_t v = atomic_load_explicit(&http_count[r][m][k], memory_order_relaxed);
                if (v)
                    iy_buf_appendf(out, "iyagi_http_responses_total{route=\"%s\",method=\"%s\",code=\"%s\"} %llu\n",
                                   route_names[r], metrics_method_name(m), classes[k], (unsigned long long)v);
            }
    iy_buf_append_str(out, "# HELP iyagi_http_request_duration_seconds From a request's last byte to its "
                           "answer, by route template.\n# TYPE iyagi_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < nroutes; r++) {
        if (!atomic_load_explicit(&h_http[r].count, memory_order_relaxed)) continue;
        char label[96];
        snprintf(label, sizeof label, "route=\"%s\",", route_names[r]);
        render_samples(out, &h_http[r], label);
    }
    iy_buf_append_str(out, "# HELP iyagi_ws_ops_total WebSocket ops answered, by op and outcome (ok or the "
                           "error code).\n# TYPE iyagi_ws_ops_total counter\n");
    for (size_t o = 0; o < nops; o++)
        for (int k = 0; k < OUTCOMES; k++) {
            uint64_t v = atomic_load_explicit(&ws_count[o][k], memory_order_relaxed);
            if (v)
                iy_buf_appendf(out, "iyagi_ws_ops_total{op=\"%s\",outcome=\"%s\"} %llu\n", op_names[o],
                               k ? iy_err_code(-k) : "ok", (unsigned long long)v);
        }
    iy_buf_append_str(out, "# HELP iyagi_ws_op_duration_seconds From an op's frame to its answer, by op.\n"
                           "# TYPE iyagi_ws_op_duration_seconds histogram\n");
    for (size_t o = 0; o < nops; o++) {
        if (!atomic_load_explicit(&h_ws[o].count, memory_order_relaxed)) continue;
        char label[64];
        snprintf(label, sizeof label, "op=\"%s\",", op_names[o]);
        render_samples(out, &h_ws[o], label);
    }
}

/* ---- the process, from /proc/self at scrape time ---- */

static void render_process(iy_buf *out)
{
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = '\0';
    /* Fields after the command's closing parenthesis: state is field 3. */
    unsigned long long field[24] = { 0 };
    char *p = strrchr(buf, ')');
    for (int i = 3; p && i < 24; i++) {
        p = strchr(p + 1, ' ');
        if (p) field[i] = strtoull(p + 1, NULL, 10);
    }
    unsigned long long btime = 0;
    if ((f = fopen("/proc/stat", "re"))) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "btime %llu", &btime) == 1) break;
        fclose(f);
    }
    unsigned long long rss = 0;
    if ((f = fopen("/proc/self/statm", "re"))) {
        if (fscanf(f, "%*u %llu", &rss) != 1) rss = 0;
        fclose(f);
    }
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.') fds++;
        closedir(d);
        fds--;   /* the directory's own descriptor */
    }
    struct rlimit rl = { 0, 0 };
    getrlimit(RLIMIT_NOFILE, &rl);
    iy_buf_appendf(out,
                   "# HELP process_cpu_seconds_total User and system CPU time spent, seconds.\n"
                   "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
                   "# HELP process_resident_memory_bytes Resident memory size, bytes.\n"
                   "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %llu\n"
                   "# HELP process_open_fds Open file descriptors.\n"
                   "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n"
                   "# HELP process_max_fds The open-file limit.\n"
                   "# TYPE process_max_fds gauge\nprocess_max_fds %llu\n"
                   "# HELP process_start_time_seconds Start time of the process, seconds since the epoch.\n"
                   "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n"
                   "# HELP process_threads Threads of the process.\n"
                   "# TYPE process_threads gauge\nprocess_threads %llu\n",
                   (double)(field[14] + field[15]) / (double)tick, rss * (unsigned long long)page, fds,
                   (unsigned long long)rl.rlim_cur, (double)btime + (double)field[22] / (double)tick, field[20]);
    iy_buf_appendf(out, "# HELP iyagi_build_info The version, commit and store kind of this binary.\n"
                        "# TYPE iyagi_build_info gauge\n"
                        "iyagi_build_info{version=\"%s\",commit=\"%s\",store=\"%s\"} 1\n",
                   IYAGI_VERSION, build_commit, store_kind);
}

void metrics_set(enum metric_counter c, int64_t value)
{
    atomic_store_explicit(&counters[c], value, memory_order_relaxed);
}

void metrics_add(enum metric_counter c, int64_t delta)
{
    atomic_fetch_add_explicit(&counters[c], delta, memory_order_relaxed);
}

int64_t metrics_get(enum metric_counter c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

/* Every counter and gauge, in the order they are rendered. */
static const struct {
    enum metric_counter c;
    const char *name, *type, *help;
} plain[] = {
    { M_CONNECTIONS, "iyagi_connections", "gauge", "Open TCP connections." },
    { M_WS_CONNECTIONS, "iyagi_websocket_connections", "gauge", "Authenticated WebSocket connections." },
    { M_MESSAGES_STORED, "iyagi_messages_stored_total", "counter", "Messages stored durably." },
    { M_DUPLICATES, "iyagi_duplicate_sends_total", "counter", "Resends answered from the store (same cmid)." },
    { M_COMMITS, "iyagi_commits_total", "counter", "Group commits (one sync each)." },
    { M_COMMIT_ERRORS, "iyagi_commit_errors_total", "counter", "Failed group commits." },
    { M_DELIVERIES, "iyagi_deliveries_total", "counter", "msg frames queued to sockets." },
    { M_HTTP_REQUESTS, "iyagi_http_requests_total", "counter", "HTTP requests parsed." },
    { M_WS_FRAMES_IN, "iyagi_ws_frames_received_total", "counter", "WebSocket messages received." },
    { M_SLOW_CLOSED, "iyagi_slow_consumers_closed_total", "counter",
      "Connections closed because their output queue passed the cap." },
    { M_SHED, "iyagi_sends_shed_total", "counter",
      "Sends refused with 'unavailable' because the storage queue was too deep." },
    { M_BACKLOG, "iyagi_storage_backlog", "gauge", "Sends queued for the storage thread." },
    { M_PUSH_QUEUED, "iyagi_push_queued_total", "counter", "Push notifications queued (new or collapsed)." },
    { M_PUSH_SENT, "iyagi_push_sent_total", "counter", "Push notifications delivered (2xx)." },
    { M_PUSH_RETRIED, "iyagi_push_retried_total", "counter", "Push deliveries that failed and were rescheduled." },
    { M_PUSH_DEAD, "iyagi_push_dead_total", "counter", "Push notifications given up (dead letters)." },
    { M_PUSH_GONE, "iyagi_push_gone_total", "counter", "Web Push subscriptions removed after 404/410." },
    { M_PUSH_SKIPPED, "iyagi_push_skipped_online_total", "counter",
      "Push notifications not sent because the member was online on some node." },
    { M_GAPS_FILLED, "iyagi_gaps_filled_total", "counter", "Inbox pos gaps of sockets filled from the store." },
    { M_GAP_MESSAGES, "iyagi_gap_messages_total", "counter", "Messages sent to sockets by gap fills." },
    { M_HELD_BACK, "iyagi_held_back_total", "counter", "msg frames held back behind a missing pos." },
    { M_DUPLICATES_DROPPED, "iyagi_duplicate_frames_dropped_total", "counter",
      "msg frames not sent because the socket already had that pos." },
    { M_BUS_RECEIVED, "iyagi_bus_received_total", "counter", "Bus messages received from other nodes (cross-node deliveries)." },
    { M_BUS_LAG_MS, "iyagi_bus_lag_ms_total", "counter",
      "Summed age of bus messages from other nodes when received, ms (divide by received: the mean bus lag)." },
    { M_BUS_PUBLISH_ERRORS, "iyagi_bus_publish_errors_total", "counter", "Publishes the bus refused." },
    { M_BUS_RECONNECTS, "iyagi_bus_reconnects_total", "counter", "Reconnects to NATS." },
    { M_BUS_CONNECTED, "iyagi_bus_connected", "gauge", "1 while connected to NATS (0 single node)." },
    { M_BUS_SUBSCRIPTIONS, "iyagi_bus_subscriptions", "gauge", "Users this node is subscribed to on the bus." },
    { M_CLUSTER_NODES, "iyagi_cluster_nodes", "gauge", "Live nodes in the registry, this one included." },
    { M_DRAINING, "iyagi_draining", "gauge", "1 while this node drains (SIGTERM)." },
    { M_CONNS_REFUSED, "iyagi_connections_refused_total", "counter",
      "Connections closed at accept: --max-connections or the per-address cap." },
    { M_REQUEST_TIMEOUTS, "iyagi_request_timeouts_total", "counter",
      "HTTP requests not complete within --request-timeout (plus their body at --min-body-rate)." },
    { M_REQUEST_BUFFERED, "iyagi_request_buffered_bytes", "gauge", "Bytes of unfinished HTTP requests held." },
    { M_OVER_BUDGET, "iyagi_request_over_budget_total", "counter",
      "HTTP requests refused (503) because request buffers passed --max-request-buffers-mb." },
    { M_RATE_LIMITED, "iyagi_rate_limited_total", "counter",
      "Requests refused by a rate limit or a per-account socket cap." },
    { M_OUTPUT_BUFFERED, "iyagi_output_buffered_bytes", "gauge",
      "Bytes queued for sockets and not yet written (all of them together)." },
    { M_PG_ERRORS, "iyagi_pg_errors_total", "counter", "PostgreSQL statements or connections that failed." },
    { M_PUSH_OUTBOX, "iyagi_push_outbox", "gauge", "Push notifications waiting in the outbox." },
    { M_PUSH_OLDEST_S, "iyagi_push_outbox_oldest_seconds", "gauge",
      "Age of the oldest due push notification at the push worker's last look, seconds (0: none)." },
    { M_PUSH_DEAD_LETTERS, "iyagi_push_dead_letters", "gauge", "Push notifications given up, kept as dead letters." },
    { M_TLS_FAILED, "iyagi_tls_failures_total", "counter",
      "TLS connections closed for a failed handshake (or none within --request-timeout) or broken records." },
    { M_TOKEN_CACHE_HITS, "iyagi_token_cache_hits_total", "counter",
      "Session token checks answered from memory (--token-cache), without a storage round trip." },
    { M_TOKEN_CACHE_MISSES, "iyagi_token_cache_misses_total", "counter",
      "Session token checks the token cache could not answer (the store did)." },
    { M_TOKEN_CACHE_ENTRIES, "iyagi_token_cache_entries", "gauge", "Valid session tokens held in memory." },
    { M_SEARCH_INDEXED, "iyagi_search_indexed_total", "counter",
      "Messages (and edits and deletes) the search indexer took into the index since the start." },
};

void metrics_render(iy_buf *out)
{
    for (size_t i = 0; i < NELEM(plain); i++)
        iy_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", plain[i].name, plain[i].help,
                       plain[i].name, plain[i].type, plain[i].name, (long long)metrics_get(plain[i].c));
    render_histogram(out, &h_batch);
    render_histogram(out, &h_ack);
    render_histogram(out, &h_push);
    render_histogram(out, &h_round);
    render_histogram(out, &h_pg_wait);
    render_histogram(out, &h_pg_query);
    render_labelled(out);
    if (source_fn) source_fn(out, source_arg);
    render_process(out);
}
