/* metrics.c — relaxed atomic counters and fixed-bucket histograms. */
#include "metrics.h"
#include <stdatomic.h>

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

static void render_histogram(iy_buf *out, histogram *h)
{
    iy_buf_appendf(out, "# HELP %s %s\n# TYPE %s histogram\n", h->name, h->help, h->name);
    uint64_t cum = 0;
    for (size_t i = 0; i <= h->n; i++) {
        cum += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        if (i < h->n) iy_buf_appendf(out, "%s_bucket{le=\"%g\"} %llu\n", h->name, h->le[i], (unsigned long long)cum);
        else iy_buf_appendf(out, "%s_bucket{le=\"+Inf\"} %llu\n", h->name, (unsigned long long)cum);
    }
    iy_buf_appendf(out, "%s_sum %.6f\n%s_count %llu\n", h->name, atomic_load(&h->sum), h->name,
                   (unsigned long long)atomic_load(&h->count));
}

void metrics_observe_batch(uint64_t messages) { observe(&h_batch, (double)messages); }
void metrics_observe_ack_ns(uint64_t ns) { observe(&h_ack, (double)ns / 1e9); }
void metrics_observe_push_ms(int64_t ms) { observe(&h_push, ms > 0 ? (double)ms / 1e3 : 0); }

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
    { M_TLS_FAILED, "iyagi_tls_failures_total", "counter",
      "TLS connections closed for a failed handshake (or none within --request-timeout) or broken records." },
};

void metrics_render(iy_buf *out)
{
    for (size_t i = 0; i < NELEM(plain); i++)
        iy_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", plain[i].name, plain[i].help,
                       plain[i].name, plain[i].type, plain[i].name, (long long)metrics_get(plain[i].c));
    render_histogram(out, &h_batch);
    render_histogram(out, &h_ack);
    render_histogram(out, &h_push);
}
