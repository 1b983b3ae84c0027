/* metrics.h — process-wide counters and histograms for /metrics.
 *
 * Updated with relaxed atomics from any thread; rendered as Prometheus text.
 * Histograms have fixed bucket bounds (see metrics.c). */
#ifndef IY_METRICS_H
#define IY_METRICS_H
#include <stdint.h>
#include "../base/buf.h"

enum metric_counter {
    M_CONNECTIONS,          /* gauge: open TCP connections */
    M_WS_CONNECTIONS,       /* gauge: authenticated WebSockets */
    M_MESSAGES_STORED,      /* counter: messages stored since start */
    M_DUPLICATES,           /* counter: idempotent resends answered from the store */
    M_COMMITS,              /* counter: group commits */
    M_COMMIT_ERRORS,
    M_DELIVERIES,           /* counter: msg frames queued to sockets */
    M_HTTP_REQUESTS,
    M_WS_FRAMES_IN,
    M_SLOW_CLOSED,          /* connections dropped for an output queue over the cap */
    M_SHED,                 /* sends refused because the storage queue was too deep */
    M_BACKLOG,              /* gauge: sends queued for the storage thread (set at render) */
    M_PUSH_QUEUED,
    M_PUSH_SENT,
    M_PUSH_RETRIED,
    M_PUSH_DEAD,
    M_PUSH_GONE,
    M_PUSH_SKIPPED,         /* counter: notifications not sent: the member is online on some node */
    M_GAPS_FILLED,          /* counter: pos gaps of a socket filled from the store */
    M_GAP_MESSAGES,         /* counter: messages sent to sockets from a gap fill */
    M_HELD_BACK,            /* counter: msg frames held back because a lower pos was missing */
    M_DUPLICATES_DROPPED,   /* counter: msg frames a socket already had (pos) */
    M_BUS_RECEIVED,         /* counter: bus messages from other nodes (set at render) */
    M_BUS_LAG_MS,           /* counter: their summed age when received, ms (set at render) */
    M_BUS_PUBLISH_ERRORS,   /* counter: publishes NATS refused (set at render) */
    M_BUS_RECONNECTS,       /* counter (set at render) */
    M_BUS_CONNECTED,        /* gauge (set at render) */
    M_BUS_SUBSCRIPTIONS,    /* gauge: users subscribed on the bus (set at render) */
    M_CLUSTER_NODES,        /* gauge: live nodes in the registry, this one included (set at render) */
    M_DRAINING,             /* gauge: 1 while this node drains */
    M_CONNS_REFUSED,        /* counter: connections closed at accept (total or per-address cap) */
    M_REQUEST_TIMEOUTS,     /* counter: HTTP requests not complete within their deadline */
    M_REQUEST_BUFFERED,     /* gauge: bytes of unfinished HTTP requests held */
    M_OVER_BUDGET,          /* counter: requests refused because request buffers were over budget */
    M_RATE_LIMITED,         /* counter: requests refused by a rate limit or a per-account cap */
    M_OUTPUT_BUFFERED,      /* gauge: bytes queued for sockets, not yet written */
    M_PG_ERRORS,            /* counter: PostgreSQL statements or connections that failed */
    M_PUSH_OUTBOX,          /* gauge: notifications waiting in the outbox (the push worker's last take) */
    M_PUSH_OLDEST_S,        /* gauge: age of the oldest due one at the last take, seconds */
    M_PUSH_DEAD_LETTERS,    /* gauge: dead letters in the store (the push worker's last take) */
    M_TLS_FAILED,           /* counter: TLS connections closed for a failed or late handshake, or garbage */
    M_TOKEN_CACHE_HITS,     /* counter: token checks answered by the token cache (set at render) */
    M_TOKEN_CACHE_MISSES,   /* counter: token checks the cache could not answer (set at render) */
    M_TOKEN_CACHE_ENTRIES,  /* gauge: tokens in the cache (set at render) */
    M_SEARCH_INDEXED,       /* counter: messages the search indexer took into the index */
    M_COUNTER_COUNT
};

void metrics_add(enum metric_counter c, int64_t delta);
void metrics_set(enum metric_counter c, int64_t value);
int64_t metrics_get(enum metric_counter c);
void metrics_observe_batch(uint64_t messages);     /* one commit of that many messages */
void metrics_observe_ack_ns(uint64_t ns);          /* receipt of a send to its ack */
void metrics_observe_push_ms(int64_t ms);          /* commit of a message to its push delivery */
void metrics_observe_round_ns(uint64_t ns);        /* one commit round, begin to synced */
void metrics_observe_pg_wait_ns(uint64_t ns);      /* a caller's wait for a PostgreSQL connection */
void metrics_observe_pg_query_ns(uint64_t ns);     /* one PostgreSQL round trip (a pipeline) */

/* ---- labelled series: fixed cardinality, arrays indexed by small enums ---- */

#define METRICS_ROUTES_MAX 48
#define METRICS_OPS_MAX 16
enum metric_method { MM_GET, MM_POST, MM_PUT, MM_PATCH, MM_DELETE, MM_OTHER, MM_COUNT };

/* The HTTP route templates ("/v1/channels/{id}/messages"), by the number
 * the router leaves in conn.route; names[0] is the catch-all ("other").
 * The same for WebSocket op names (index: proto's op number; 0 "invalid").
 * Static strings; called once, before the I/O threads start. */
void metrics_http_routes(const char *const *names, size_t n);
void metrics_ws_ops(const char *const *names, size_t n);
const char *metrics_route_name(unsigned route);     /* "other" when out of range */
const char *metrics_method_name(int m);

/* One answered HTTP request: route, method, status, duration. */
void metrics_http(unsigned route, int method, int status, uint64_t ns);

/* One answered WebSocket op: its number, its outcome (0 or IY_EEXIST: ok,
 * else the error), the time from its frame to its answer. */
void metrics_ws_op(unsigned op, int err, uint64_t ns);

/* Extra text appended to every rendering (one per process: the store's
 * gauges read at scrape time, e.g. RocksDB's properties). Called with arg
 * on the scraping thread; it must be thread-safe. */
void metrics_set_source(void (*fn)(iy_buf *out, void *arg), void *arg);

/* iyagi_build_info{version,commit,store} 1: the store kind and the commit
 * (static strings; the commit comes from the binary's gen/commit.c, which
 * the fuzz targets do not link, hence passed in). */
void metrics_set_build(const char *store_kind, const char *commit);

/* Prometheus text: the counters, histograms, labelled series, the
 * source's text, process_* (from /proc/self) and build info. */
void metrics_render(iy_buf *out);

#endif
