/* metrics.c — relaxed atomic counters and fixed-bucket histograms. */
#include "metrics.h"
#include <stdatomic.h>

static _Atomic int64_t counters[M_COUNTER_COUNT];

static const uint64_t batch_le[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096 };
#define NBATCH (sizeof batch_le / sizeof batch_le[0])
static _Atomic uint64_t batch_bucket[NBATCH + 1], batch_sum, batch_count;

/* Ack latency bounds in microseconds. */
static const uint64_t ack_le_us[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
                                      100000, 250000, 1000000 };
#define NACK (sizeof ack_le_us / sizeof ack_le_us[0])
static _Atomic uint64_t ack_bucket[NACK + 1], ack_sum_ns, ack_count;

void metrics_set(enum metric_counter c, int64_t value)
{
    atomic_store_explicit(&counters[c], value, memory_order_relaxed);
}

void metrics_add(enum metric_counter c, int64_t delta)
{
    atomic_fetch_add_explicit(&counters[c], delta, memory_order_relaxed);
}

void metrics_observe_batch(uint64_t messages)
{
    size_t i = 0;
    while (i < NBATCH && messages > batch_le[i]) i++;
    atomic_fetch_add_explicit(&batch_bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&batch_sum, messages, memory_order_relaxed);
    atomic_fetch_add_explicit(&batch_count, 1, memory_order_relaxed);
}

void metrics_observe_ack_ns(uint64_t ns)
{
    uint64_t us = ns / 1000;
    size_t i = 0;
    while (i < NACK && us > ack_le_us[i]) i++;
    atomic_fetch_add_explicit(&ack_bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&ack_sum_ns, ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&ack_count, 1, memory_order_relaxed);
}

static int64_t get(enum metric_counter c)
{
    return atomic_load_explicit(&counters[c], memory_order_relaxed);
}

static void simple(iy_buf *out, const char *name, const char *type, const char *help, int64_t v)
{
    iy_buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n%s %lld\n", name, help, name, type, name,
                   (long long)v);
}

void metrics_render(iy_buf *out)
{
    simple(out, "iyagi_connections", "gauge", "Open TCP connections.", get(M_CONNECTIONS));
    simple(out, "iyagi_websocket_connections", "gauge", "Authenticated WebSocket connections.",
           get(M_WS_CONNECTIONS));
    simple(out, "iyagi_messages_stored_total", "counter", "Messages stored durably.",
           get(M_MESSAGES_STORED));
    simple(out, "iyagi_duplicate_sends_total", "counter", "Resends answered from the store (same cmid).",
           get(M_DUPLICATES));
    simple(out, "iyagi_commits_total", "counter", "Group commits (one sync each).", get(M_COMMITS));
    simple(out, "iyagi_commit_errors_total", "counter", "Failed group commits.", get(M_COMMIT_ERRORS));
    simple(out, "iyagi_deliveries_total", "counter", "msg frames queued to sockets.", get(M_DELIVERIES));
    simple(out, "iyagi_http_requests_total", "counter", "HTTP requests parsed.", get(M_HTTP_REQUESTS));
    simple(out, "iyagi_ws_frames_received_total", "counter", "WebSocket messages received.",
           get(M_WS_FRAMES_IN));
    simple(out, "iyagi_slow_consumers_closed_total", "counter",
           "Connections closed because their output queue passed the cap.", get(M_SLOW_CLOSED));
    simple(out, "iyagi_sends_shed_total", "counter",
           "Sends refused with 'unavailable' because the storage queue was too deep.", get(M_SHED));
    simple(out, "iyagi_storage_backlog", "gauge", "Sends queued for the storage thread.", get(M_BACKLOG));

    iy_buf_append_str(out, "# HELP iyagi_commit_batch_size Messages per group commit.\n"
                           "# TYPE iyagi_commit_batch_size histogram\n");
    uint64_t cum = 0;
    for (size_t i = 0; i <= NBATCH; i++) {
        cum += atomic_load_explicit(&batch_bucket[i], memory_order_relaxed);
        if (i < NBATCH)
            iy_buf_appendf(out, "iyagi_commit_batch_size_bucket{le=\"%llu\"} %llu\n",
                           (unsigned long long)batch_le[i], (unsigned long long)cum);
        else
            iy_buf_appendf(out, "iyagi_commit_batch_size_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    iy_buf_appendf(out, "iyagi_commit_batch_size_sum %llu\niyagi_commit_batch_size_count %llu\n",
                   (unsigned long long)atomic_load(&batch_sum), (unsigned long long)atomic_load(&batch_count));

    iy_buf_append_str(out, "# HELP iyagi_ack_latency_seconds From receipt of a send to its ack.\n"
                           "# TYPE iyagi_ack_latency_seconds histogram\n");
    cum = 0;
    for (size_t i = 0; i <= NACK; i++) {
        cum += atomic_load_explicit(&ack_bucket[i], memory_order_relaxed);
        if (i < NACK)
            iy_buf_appendf(out, "iyagi_ack_latency_seconds_bucket{le=\"%g\"} %llu\n",
                           (double)ack_le_us[i] / 1e6, (unsigned long long)cum);
        else
            iy_buf_appendf(out, "iyagi_ack_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    iy_buf_appendf(out, "iyagi_ack_latency_seconds_sum %.6f\niyagi_ack_latency_seconds_count %llu\n",
                   (double)atomic_load(&ack_sum_ns) / 1e9, (unsigned long long)atomic_load(&ack_count));
}
